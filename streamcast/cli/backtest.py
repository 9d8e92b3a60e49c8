"""`streamcast backtest`: score a fitted or saved model next to the naive baselines."""

from __future__ import annotations

import json
import sys

import click

import streamcast
from streamcast.atomic import check_writable
from streamcast.cli.options import (
    CONTEXT,
    data_options,
    device_option,
    fit_config,
    fit_options,
    glitch_ratio,
    long_gap,
    notes,
    parse_floats,
    read_for_model,
    reader_for_model,
    threads_option,
    time_zone,
    warn,
    with_horizon,
)
from streamcast.errors import UsageError


@click.command(context_settings=CONTEXT)
@click.argument("data", required=False)
@click.option(
    "-m",
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="Score this saved model [default: fit one on DATA with the scored windows held out].",
)
@data_options
@click.option(
    "--windows",
    type=int,
    default=5,
    show_default=True,
    help="Forecast origins scored per series: the last K.",
)
@click.option("--stride", type=int, help="Steps between origins [default: the horizon].")
@click.option(
    "--season", type=int, help="Seasonal period of seasonal naive and MASE [default: from the frequency]."
)
@click.option("--per-series", is_flag=True, help="Also score every series.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option(
    "-o", "--output", metavar="PATH", help="Write every table to .csv, .parquet or .jsonl atomically."
)
@click.option(
    "--save-model", metavar="PATH", help="Keep the model fitted with the windows held out (not with -m)."
)
@click.option(
    "--anomaly-z",
    type=float,
    metavar="Z",
    help="Also stream the data as `stream --watch --anomaly-z Z` would and report how often it flags.",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="K/N",
    help="With -m: score only shard K of N and write its part (per-series scores and point counts); "
    "-o OUT/ writes OUT/part-K-of-N.parquet [under torchrun: the rank's shard].",
)
@click.option(
    "--combine",
    metavar="FOLDER",
    help="Put the parts in FOLDER together: the tables of one backtest over every series.",
)
@click.option(
    "--save-forecasts",
    metavar="PATH",
    help="Also write the forecasts behind the scores, one row per origin and step (series_id, timestamp, "
    "cutoff, step, y, forecast, naive, seasonal_naive, observed), to .csv, .parquet or .jsonl.",
)
@click.option(
    "--keep-names",
    is_flag=True,
    help="In --save-forecasts, name the id and time columns as the data does, so that it joins back.",
)
@fit_options
@threads_option
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress or notes on stderr (warnings stay).")
@click.pass_context
def backtest(
    ctx,
    data,
    model_path,
    id_col,
    time_col,
    target,
    covariates,
    windows,
    stride,
    season,
    per_series,
    as_json,
    output,
    save_model,
    anomaly_z,
    shard_text,
    combine,
    save_forecasts,
    keep_names,
    quantiles,
    threads,
    device,
    quiet,
    **options,
):
    """Score forecasts at the last --windows origins of every series, next to naive and seasonal naive.

    Without -m, first fits a model with fit's options on each series minus the points it is scored
    on. Prints tables on a terminal, CSV in a pipe, JSON with --json.

    \b
      streamcast backtest sample_data/load_hourly.parquet --target load --windows 7 --epochs 10
      streamcast backtest -m model.streamcast data.parquet --per-series -o scores.csv
      streamcast backtest -m model.streamcast --json | jq .overall.mase
      streamcast backtest -m model.streamcast data.csv --anomaly-z 4   # the flag's false-alarm rate
    """
    from streamcast.backtest import backtest as run_backtest
    from streamcast.backtest import fit_and_backtest
    from streamcast.output import check_output_path
    from streamcast.parts import choose_shard
    from streamcast.threads import set_process_threads

    if combine:
        _combine(combine, output, as_json, quiet)
        return
    # Under torchrun a saved model is scored a shard per rank; fitting is not sharded here.
    shard, from_torchrun = choose_shard(shard_text) if shard_text or model_path else (None, False)
    if shard is not None:
        if as_json:
            raise UsageError("--shard writes a part for --combine, not JSON: drop --json")
        if anomaly_z is not None:
            raise UsageError("--anomaly-z streams all the data, not one shard: run it without --shard")
        if save_forecasts:
            raise UsageError("--save-forecasts writes one file of every series: run it without --shard")
        if model_path:
            _only_when_fitting(ctx, save_model)
        source = (model_path, data, id_col, time_col, target, covariates)
        scoring = {"windows": windows, "stride": stride, "season": season, "threads": threads}
        scoring["device"] = device
        _backtest_shard(ctx, source, shard, from_torchrun, output, scoring, quiet)
        return
    if output:
        check_output_path(output)
    if output == "-" and as_json:
        raise UsageError("-o - and --json both print to stdout: choose one")
    settings = {"windows": windows, "stride": stride, "season": season, "per_series": per_series}
    settings["keep_forecasts"] = bool(save_forecasts)
    if save_forecasts:
        if save_forecasts == "-":
            raise UsageError("--save-forecasts needs a file path: stdout carries the scores")
        check_output_path(save_forecasts)
    if save_model:
        check_writable(save_model, "--save-model file")
    watch = _watch_config(anomaly_z)
    set_process_threads(threads)
    if model_path:
        _only_when_fitting(ctx, save_model)
        forecaster = streamcast.load(model_path).to(device)
        # The backtest says a zone change among its own warnings.
        series_data = read_for_model(forecaster, data, id_col, time_col, target, covariates, quiet=True)
        notes(series_data.notes, quiet)
        result = run_backtest(forecaster, series_data, **settings, threads=threads)
        scored = model_path
    else:
        if not data:
            raise UsageError("backtest needs DATA to fit a model on, or -m MODEL to score a saved one")
        from streamcast.display import FitProgress
        from streamcast.reading import read_series

        config = fit_config(options, quantiles=parse_floats(quantiles), covariates=tuple(covariates))
        series_data = read_series(
            data,
            id_col=id_col,
            time_col=time_col,
            target=target,
            covariates=covariates,
            max_gap=long_gap(),
            glitch_ratio=glitch_ratio(),
            time_zone=time_zone(),
            future_covariates=config.future_covariates,
            static=config.static,
        )
        progress = FitProgress(quiet=quiet, epochs=config.epochs)
        progress.notes(series_data.notes)
        config = with_horizon(config, options["horizon"], series_data.freq, quiet)
        with progress:
            forecaster, result = fit_and_backtest(
                series_data, config, on_epoch=progress.epoch, **settings, threads=threads, device=device
            )
        if save_model:
            progress.summary(forecaster, streamcast.save(forecaster, save_model))
        scored = f"{config.cell} fitted without the scored windows"
    notes(result.notes, quiet)
    for warning in result.warnings:
        warn(warning)
    if save_forecasts:
        from streamcast.forecasting import with_source_names
        from streamcast.output import write_frame

        rows = with_source_names(result.forecasts, series_data.columns) if keep_names else result.forecasts
        write_frame(rows, save_forecasts)
        if not quiet:
            click.echo(f"wrote {save_forecasts} ({result.forecasts.height:,} forecasts)", err=True)
    alarms = None
    if watch is not None:
        from streamcast.alarms import alarm_rate

        alarms = alarm_rate(forecaster, series_data, watch, threads=threads)
        if not as_json:
            click.echo(alarms.describe(), err=True)
    _print_backtest(result, scored, series_data.source, as_json, output, quiet, alarms)


def _watch_config(anomaly_z: float | None):
    if anomaly_z is None:
        return None
    from streamcast.stream.watch import WatchConfig

    return WatchConfig(z=anomaly_z)


def _backtest_shard(
    ctx, source: tuple, shard, from_torchrun: bool, output, scoring: dict, quiet: bool
) -> None:
    """Score one shard's series with a saved model and write its part for `--combine`."""
    import polars as pl

    from streamcast.backtest import PART_SCHEMA
    from streamcast.backtest import backtest as run_backtest
    from streamcast.output import check_output_path, write_frame
    from streamcast.parts import make_dataset_folder, output_for

    model_path, data, *columns = source
    if not model_path:
        raise UsageError("--shard scores a saved model: fit once, then pass -m MODEL to every shard")
    make_dataset_folder(output)
    output = output_for(output, shard, from_torchrun)
    check_output_path(output)
    scoring = dict(scoring)
    forecaster = streamcast.load(model_path).to(scoring.pop("device"))
    reader = reader_for_model(forecaster, data, *columns)
    ids = reader.share(shard=shard)
    part = pl.DataFrame(schema=PART_SCHEMA)
    for series_data in reader.read(ids, batch_series=None):
        notes(series_data.notes, quiet)
        result = run_backtest(forecaster, series_data, **scoring, per_series=True)
        notes(result.notes, quiet)
        for warning in result.warnings:
            warn(warning)
        part = result.to_part_frame()
    write_frame(part, output)
    if output != "-" and not quiet:
        click.echo(f"wrote {output} (shard {shard}: {len(ids)} series)", err=True)


def _combine(folder: str, output: str | None, as_json: bool, quiet: bool) -> None:
    """The parts' scores put together, written as one backtest's tables are."""
    from streamcast.backtest import combine_scores
    from streamcast.output import check_output_path, write_frame
    from streamcast.parts import read_parts

    if as_json:
        raise UsageError("--combine writes the tables as CSV or to -o: drop --json")
    if output:
        check_output_path(output)
    write_frame(combine_scores(read_parts(folder)), output or "-")
    if output and output != "-" and not quiet:
        click.echo(f"wrote {output}", err=True)


def _only_when_fitting(ctx: click.Context, save_model: str | None) -> None:
    """With -m nothing is fitted: a fit option given anyway is a mistake worth saying so."""
    from dataclasses import fields

    from streamcast.training import FitConfig

    names = {f.name for f in fields(FitConfig)} - {"covariates"}
    for param in ctx.command.params:
        if param.name in names and ctx.get_parameter_source(param.name) != click.core.ParameterSource.DEFAULT:
            raise UsageError(
                f"{param.opts[0]} sets how backtest fits a model, but -m scores a saved one: drop one of them"
            )
    if save_model:
        raise UsageError(
            "--save-model keeps the model backtest fits, but -m scores a saved one: drop one of them"
        )


def _print_backtest(
    result, scored: str, source: str, as_json: bool, output: str | None, quiet: bool, alarms=None
) -> None:
    """The tables are the result: rich on a terminal, CSV in a pipe (unless -o), JSON on request."""
    from streamcast.output import write_frame

    if output:
        write_frame(result.to_frame(), output)
    if output == "-":
        return  # the tables went to stdout as CSV: nothing else may follow them there
    if as_json:
        extra = {"anomalies": alarms.to_dict()} if alarms is not None else {}
        click.echo(json.dumps({"model": scored, "data": source, **result.to_dict(), **extra}, indent=2))
    elif sys.stdout.isatty():
        from streamcast.display import print_backtest

        print_backtest(result, f"backtest: {scored} on {source}")
    elif not output:
        write_frame(result.to_frame(), "-")
    if output and not quiet:
        click.echo(f"wrote {output}", err=True)
