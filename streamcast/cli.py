"""The `streamcast` command: a thin shell that parses options, calls the library, prints results.

stdout carries data only; progress, tables and warnings go to stderr. Every user error becomes one
line on stderr and an exit code (2 usage, 1 data or model file, 75 lock timeout); bugs stay tracebacks.
"""

from __future__ import annotations

import json
import sys

import click
import polars as pl

import streamcast
from streamcast.atomic import check_writable
from streamcast.errors import DataError, StreamcastError, UsageError
from streamcast.modelfile import DEFAULT_MODEL_PATH

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Group(click.Group):
    """Turns the library's user errors into one stderr line and the error's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except StreamcastError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # `streamcast forecast | head` closing the pipe early is not an error.
            sys.stderr.close()
            ctx.exit(0)
        except OSError as exc:
            # A path that is a folder, a disk that is full, a permission: the system's own words
            # say it best, on one line, and the atomic writes have left every old file intact.
            where = f" {exc.filename!r}" if exc.filename else ""
            click.echo(f"Error: cannot use{where}: {exc.strerror or exc}; check the path and its permissions", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(streamcast.__version__, "-V", "--version", prog_name="streamcast")
def main() -> None:
    """Forecast time series with stateful recurrent networks, in batch and on live streams.

    \b
      streamcast fit data.parquet              # train; writes model.streamcast
      streamcast forecast --horizon 24         # forecast every series from the newest data
      producer | streamcast stream             # a rolling forecast for every tick on stdin
      streamcast info                          # what is inside a model file
    """


def data_options(f):
    """Column options shared by every command that reads series."""
    f = click.option(
        "--covariate",
        "covariates",
        multiple=True,
        metavar="COL",
        help="Numeric covariate column (repeatable).",
    )(f)
    f = click.option("--target", metavar="COL", help="Value column (default: y, value or target).")(f)
    f = click.option(
        "--time-col", metavar="COL", help="Timestamp column (default: ds, timestamp, time or date)."
    )(f)
    f = click.option(
        "--id-col",
        metavar="COL",
        help="Series id column (default: unique_id, id, series_id or series).",
    )(f)
    return f


def model_option(f):
    return click.option(
        "-m",
        "--model",
        "model_path",
        default=DEFAULT_MODEL_PATH,
        show_default=True,
        type=click.Path(dir_okay=False),
        help="Model file written by `streamcast fit`.",
    )(f)


def fit_options(f):
    """The training options, shared by `fit` and `backtest`; they mirror FitConfig one to one."""
    options = [
        click.option(
            "--cell",
            type=click.Choice(["rnn", "rnn-relu", "lstm", "gru"]),
            default="lstm",
            show_default=True,
            help="Recurrent cell (lstm: on CPU twice as fast as gru, as accurate on M4 Hourly).",
        ),
        click.option(
            "--hidden", "hidden_size", type=int, default=64, show_default=True, help="Hidden state size."
        ),
        click.option(
            "--layers",
            "num_layers",
            type=int,
            default=1,
            show_default=True,
            help="Stacked recurrent layers.",
        ),
        click.option(
            "--dropout",
            type=float,
            default=0.0,
            show_default=True,
            help="Dropout between layers and before the head.",
        ),
        click.option(
            "--conv",
            type=int,
            default=0,
            show_default=True,
            help="Causal 1-D convolution kernel over the inputs (0 = off).",
        ),
        click.option(
            "--ar",
            type=int,
            help="The head sees the last N values, with a linear highway over them started as seasonal naive (0 = off) [default: a week of steps for sub-daily data, 168 hourly].",
        ),
        click.option(
            "--horizon", type=int, default=24, show_default=True, help="Steps ahead forecast at every step."
        ),
        click.option(
            "--quantiles",
            metavar="Q,Q,..",
            help="Also learn these quantiles (pinball loss), e.g. 0.1,0.5,0.9.",
        ),
        click.option(
            "--bptt", type=int, default=48, show_default=True, help="Truncated BPTT chunk length in steps."
        ),
        click.option(
            "--batch-size",
            type=int,
            default=32,
            show_default=True,
            help="Lanes trained in parallel (fewer on small data).",
        ),
        click.option(
            "--epochs",
            type=int,
            default=30,
            show_default=True,
            help="Most epochs (early stopping may end sooner).",
        ),
        click.option("--lr", type=float, default=3e-3, show_default=True, help="Learning rate."),
        click.option(
            "--optimizer",
            type=click.Choice(["adam", "adamw", "rmsprop", "sgd"]),
            default="adam",
            show_default=True,
        ),
        click.option("--weight-decay", type=float, default=0.0, show_default=True),
        click.option(
            "--lr-schedule",
            type=click.Choice(["plateau", "cosine", "none"]),
            default="plateau",
            show_default=True,
        ),
        click.option(
            "--clip",
            type=float,
            default=1.0,
            show_default=True,
            help="Clip the global gradient norm (0 = off).",
        ),
        click.option(
            "--clip-value",
            type=float,
            default=0.0,
            show_default=True,
            help="Clip each gradient value (0 = off).",
        ),
        click.option("--loss", type=click.Choice(["mae", "mse", "huber"]), default="mae", show_default=True),
        click.option(
            "--scaling",
            type=click.Choice(["mean", "std"]),
            default="mean",
            show_default=True,
            help="Per-series scale: mean absolute value or standard deviation.",
        ),
        click.option(
            "--val-size", type=int, help="Validation steps at the end of each series [default: horizon]."
        ),
        click.option(
            "--patience",
            type=int,
            default=5,
            show_default=True,
            help="Epochs without improvement before stopping.",
        ),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _floats(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(
            f"--quantiles takes numbers separated by commas, e.g. 0.1,0.5,0.9; got {text!r}"
        ) from None


@main.command(context_settings=CONTEXT)
@click.argument("data", type=str)
@data_options
@click.option(
    "-o",
    "--output",
    default=DEFAULT_MODEL_PATH,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to write the model.",
)
@fit_options
@click.option(
    "--report",
    metavar="PATH",
    help="Also draw the training curves (loss, gradient norm, clipping, reach) to .png, .svg or .pdf.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def fit(data, id_col, time_col, target, covariates, output, quantiles, report, quiet, **options):
    """Train a forecaster on DATA (Parquet, CSV, .csv.gz, or - for CSV on stdin).

    \b
      streamcast fit sample_data/load_hourly.parquet --target load --covariate temperature
      streamcast fit data.csv --cell lstm --hidden 128 --bptt 96 --horizon 48 -o lstm.streamcast
      streamcast fit data.csv --report training.png
    """
    from streamcast.display import FitProgress
    from streamcast.reading import read_series
    from streamcast.training import FitConfig
    from streamcast.training import fit as fit_model

    config = FitConfig(quantiles=_floats(quantiles), covariates=tuple(covariates), **options)
    check_writable(output, "model")
    if report:
        from streamcast.plotting import check_figure_path

        check_figure_path(report)  # before training, not after
    series = read_series(data, id_col=id_col, time_col=time_col, target=target, covariates=covariates)
    progress = FitProgress(quiet=quiet)
    progress.notes(series.notes)
    with progress:
        forecaster = fit_model(series, config, on_epoch=progress.epoch)
    path = streamcast.save(forecaster, output)
    progress.summary(forecaster, path)
    if report:
        _training_report(forecaster, report, path, quiet)


def _training_report(forecaster, report: str, model_path, quiet: bool) -> None:
    from streamcast.plotting import plot_training

    cfg = forecaster.info["fit_config"]
    title = f"{model_path}: {cfg['cell']}, hidden {cfg['hidden_size']}, bptt {cfg['bptt']}, lr {cfg['lr']:g}"
    plot_training(forecaster.info["history"], report, clip=cfg["clip"], title=title)
    if not quiet:
        click.echo(f"wrote {report}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("model_path", default=DEFAULT_MODEL_PATH, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON on stdout.")
def info(model_path, as_json):
    """Show what is inside a model file: config, data, metrics and gradient health.

    \b
      streamcast info model.streamcast
      streamcast info --json | jq .info.gradient_health
    """
    from streamcast.modelfile import read_metadata

    meta = read_metadata(model_path)
    if as_json:
        click.echo(json.dumps(meta, indent=2, sort_keys=True))
        return
    from streamcast.display import print_info

    print_info(meta, model_path)


@main.command(context_settings=CONTEXT)
@click.argument("data", required=False)
@model_option
@data_options
@click.option(
    "--horizon", type=int, help="Steps to forecast [default: the trained horizon]; longer ones roll forward."
)
@click.option(
    "--context", type=int, metavar="N", help="Warm the state over the last N steps only [default: all]."
)
@click.option("--as-of", metavar="TIMESTAMP", help="Forecast from this past time (backfills, checks).")
@click.option("--series", multiple=True, metavar="ID", help="Only this series (repeatable).")
@click.option(
    "-o",
    "--output",
    metavar="PATH",
    help="Write .csv, .parquet or .jsonl atomically instead of CSV on stdout.",
)
@click.option(
    "--lock-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for another run writing the same output.",
)
@click.option("-q", "--quiet", is_flag=True, help="No notes or warnings on stderr.")
def forecast(
    data,
    model_path,
    id_col,
    time_col,
    target,
    covariates,
    horizon,
    context,
    as_of,
    series,
    output,
    lock_timeout,
    quiet,
):
    """Forecast every series from a saved model; CSV on stdout unless -o.

    With no DATA, re-reads the data file recorded in the model, so a cron job sees the newest rows.

    \b
      streamcast forecast --horizon 24 > forecast.csv
      streamcast forecast new.parquet -m model.streamcast --series meter_01 -o out.parquet
      streamcast forecast --as-of 2024-03-01T00:00 --horizon 48
    """
    from streamcast.forecasting import forecast as run_forecast
    from streamcast.forecasting import parse_as_of
    from streamcast.locking import output_lock
    from streamcast.output import check_output_path, write_frame

    if output:
        check_output_path(output)
    forecaster = streamcast.load(model_path)
    series_data = _read_for_model(forecaster, data, id_col, time_col, target, covariates)
    if horizon is not None and horizon > forecaster.horizon and not quiet:
        _warn(
            f"--horizon {horizon} is longer than the trained {forecaster.horizon}: later steps are fed the model's own forecasts, and accuracy degrades"
        )
    if as_of is not None and not quiet:
        cutoff = parse_as_of(as_of, series_data.frame["timestamp"].dtype)
        last = series_data.frame["timestamp"].max()
        if cutoff > last:
            _warn(f"--as-of {as_of} is after the last observation ({last}): forecasting from the last one")
    table = run_forecast(
        forecaster, series_data, horizon=horizon, context=context, as_of=as_of, series=series
    )
    new = table.filter(pl.col("new_series"))["series_id"].unique(maintain_order=True).to_list()
    if new and not quiet:
        _warn(
            f"{len(new)} series the model never saw (e.g. {new[0]!r}) were scaled by their own history; see the new_series column"
        )
    if output:
        with output_lock(output, lock_timeout):
            write_frame(table, output)
    else:
        write_frame(table, "-")


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def _read_for_model(forecaster, data, id_col, time_col, target, covariates):
    """Read DATA, or the model's own data source, with the model's column mapping unless overridden."""
    from streamcast.reading import read_series

    source = data or forecaster.info.get("data", {}).get("source")
    if not source or (not data and source in ("-", "<frame>")):
        raise UsageError("this model records no data file to re-read: pass DATA (a path, or - for stdin)")
    cols = forecaster.columns
    return read_series(
        source,
        id_col=id_col or cols.id,
        time_col=time_col or cols.time,
        target=target or cols.target,
        covariates=covariates or cols.covariates,
    )


@main.command(context_settings=CONTEXT)
@click.argument("source", default="-", type=str, metavar="[INPUT]")
@model_option
@click.option(
    "--id-col", metavar="COL", help="Series id column or key [default: the model's, else series_id, id, ...]."
)
@click.option(
    "--time-col",
    metavar="COL",
    help="Timestamp column or key [default: the model's, else timestamp, ds, ...].",
)
@click.option(
    "--target", metavar="COL", help="Value column or key [default: the model's, else value, y, target]."
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["csv", "jsonl"]),
    help="Input lines [default: detected from the first line].",
)
@click.option("--output-format", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True, help="JSON objects or CSV rows, one per observation.")
@click.option(
    "--every",
    type=int,
    default=1,
    show_default=True,
    help="Emit the forecast of every Nth observation of each series.",
)
@click.option(
    "--warmup",
    "warmup_data",
    metavar="DATA",
    help="Pre-warm series states from this history file (as `forecast` does).",
)
@click.option(
    "--warmup-ticks",
    type=int,
    help="Observations a zero state warms up over [default: two seasons, at least the horizon].",
)
@click.option(
    "--max-gap",
    type=int,
    default=24,
    show_default=True,
    help="Longest gap in periods filled by interpolation; a longer one resets the series.",
)
@click.option(
    "--start",
    metavar="TIME",
    help="Time of a new series' first value when lines carry no time [default: now].",
)
@click.option(
    "--state", "state_path", metavar="FILE", help="Checkpoint every series' state here, and resume from it."
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=10_000,
    show_default=True,
    help="Observations between checkpoints.",
)
@click.option(
    "--checkpoint-seconds", type=float, default=60.0, show_default=True, help="Seconds between checkpoints."
)
@click.option(
    "--strict", is_flag=True, help="Exit with an error at the first bad line instead of skipping it."
)
@click.option(
    "--batch-lines", type=int, default=8192, show_default=True, help="Most lines in one micro-batch."
)
@click.option(
    "--learn",
    is_flag=True,
    help="Keep training on the stream (truncated BPTT once each tick's targets arrive).",
)
@click.option(
    "--learn-rate", type=float, default=1e-3, show_default=True, help="Online learning rate (Adam)."
)
@click.option(
    "--learn-window", type=int, default=24, show_default=True, help="Steps of truncated BPTT per update."
)
@click.option(
    "--learn-every", type=int, default=256, show_default=True, help="Observations between update rounds."
)
@click.option(
    "--save-model", metavar="PATH", help="With --learn: write the adapted model here at every checkpoint."
)
@click.option("-q", "--quiet", is_flag=True, help="No per-line reports on stderr (the summary stays).")
def stream(
    source,
    model_path,
    id_col,
    time_col,
    target,
    input_format,
    output_format,
    warmup_data,
    start,
    state_path,
    learn,
    learn_rate,
    learn_window,
    learn_every,
    save_model,
    quiet,
    **options,
):
    """Rolling forecasts: one line out for every observation on stdin (or INPUT), flushed at once.

    \b
      tail -f meter.csv | streamcast stream -m model.streamcast
      cat ticks.jsonl | streamcast stream --state stream.state --output-format csv
      producer | streamcast stream --warmup history.parquet --every 4 --learn --save-model live.streamcast
    """
    from pathlib import Path

    import torch

    from streamcast.online import LearnConfig
    from streamcast.reading import read_series
    from streamcast.stream_input import parser_for
    from streamcast.stream_session import SessionOptions, StreamSession
    from streamcast.stream_state import StreamState
    from streamcast.streaming import StreamConfig, warm_up

    if save_model and not learn:
        raise UsageError("--save-model writes the model adapted by --learn: add --learn")
    for path, what in ((state_path, "--state file"), (save_model, "--save-model file")):
        if path:
            check_writable(path, what)
    for name in ("checkpoint_every", "batch_lines"):
        if options[name] < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    # One thread: a stream's steps are small, and a second thread mostly waits (on polars' threads
    # too); measured 5x faster in bulk on 2 cores.
    torch.set_num_threads(1)
    forecaster = streamcast.load(model_path)
    learn_config = LearnConfig(learn_rate, learn_window, learn_every) if learn else None
    config = StreamConfig(
        warmup=options["warmup_ticks"],
        max_gap=options["max_gap"],
        every=options["every"],
        strict=options["strict"],
        start=_stream_start(start, forecaster.freq),
        learn=learn_config,
    )
    if state_path and Path(state_path).exists():
        state = StreamState.load(state_path, forecaster)
        click.echo(
            f"resumed {len(state)} series from {state_path} ({state.accepted} observations so far)", err=True
        )
    else:
        state = StreamState(forecaster)
    parser = parser_for(forecaster, id_col=id_col, time_col=time_col, target=target, fmt=input_format)
    if warmup_data:
        cols = parser.columns
        history = read_series(
            warmup_data, id_col=cols.id, time_col=cols.time, target=cols.target, covariates=cols.covariates
        )
        warmed = warm_up(forecaster, state, history)
        click.echo(f"warmed {len(warmed)} series from {warmup_data}", err=True)
    session_options = SessionOptions(
        output_format,
        state_path,
        options["checkpoint_every"],
        options["checkpoint_seconds"],
        save_model,
        options["batch_lines"],
        quiet,
    )
    session = StreamSession(forecaster, state, config, parser, session_options, sys.stdout.buffer, sys.stderr)
    if source == "-":
        code = session.run(sys.stdin.buffer)
    else:
        if not Path(source).is_file():
            what = "is a folder" if Path(source).is_dir() else "not found"
            raise DataError(f"input {source!r} {what}: give a file of lines, or - (the default) for stdin")
        with open(source, "rb") as f:
            code = session.run(f)
    sys.exit(code)


def _stream_start(text: str | None, freq: str):
    if text is None:
        return None
    if freq.endswith("i"):
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"--start {text!r}: this model counts steps, give a step number") from None
    from datetime import datetime

    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--start {text!r} is not a timestamp; use ISO 8601, e.g. 2024-03-01T12:00"
        ) from None


@main.command(context_settings=CONTEXT)
@click.argument("data", required=False)
@click.option(
    "-m",
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="Score this saved model [default: fit one on DATA with the scored windows held out].",
)
@data_options
@click.option("--windows", type=int, default=5, show_default=True, help="Forecast origins scored per series: the last K.")
@click.option("--stride", type=int, help="Steps between origins [default: the horizon].")
@click.option("--season", type=int, help="Seasonal period of seasonal naive and MASE [default: from the frequency].")
@click.option("--per-series", is_flag=True, help="Also score every series.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("-o", "--output", metavar="PATH", help="Write every table to .csv, .parquet or .jsonl atomically.")
@click.option("--save-model", metavar="PATH", help="Keep the model fitted with the windows held out (not with -m).")
@fit_options
@click.option("-q", "--quiet", is_flag=True, help="No progress or notes on stderr (warnings stay).")
@click.pass_context
def backtest(ctx, data, model_path, id_col, time_col, target, covariates, windows, stride, season, per_series, as_json, output, save_model, quantiles, quiet, **options):
    """Score forecasts at the last --windows origins of every series, next to naive and seasonal naive.

    Without -m, first fits a model with fit's options on each series minus the points it is scored
    on. Prints tables on a terminal, CSV in a pipe, JSON with --json.

    \b
      streamcast backtest sample_data/load_hourly.parquet --target load --windows 7 --epochs 10
      streamcast backtest -m model.streamcast data.parquet --per-series -o scores.csv
      streamcast backtest -m model.streamcast --json | jq .overall.mase
    """
    from streamcast.backtest import backtest as run_backtest
    from streamcast.backtest import fit_and_backtest
    from streamcast.output import check_output_path

    if output:
        check_output_path(output)
    settings = {"windows": windows, "stride": stride, "season": season, "per_series": per_series}
    if save_model:
        check_writable(save_model, "--save-model file")
    if model_path:
        _only_when_fitting(ctx, save_model)
        forecaster = streamcast.load(model_path)
        series_data = _read_for_model(forecaster, data, id_col, time_col, target, covariates)
        _notes(series_data.notes, quiet)
        result = run_backtest(forecaster, series_data, **settings)
        scored = model_path
    else:
        if not data:
            raise UsageError("backtest needs DATA to fit a model on, or -m MODEL to score a saved one")
        from streamcast.display import FitProgress
        from streamcast.reading import read_series
        from streamcast.training import FitConfig

        config = FitConfig(quantiles=_floats(quantiles), covariates=tuple(covariates), **options)
        series_data = read_series(data, id_col=id_col, time_col=time_col, target=target, covariates=covariates)
        progress = FitProgress(quiet=quiet)
        progress.notes(series_data.notes)
        with progress:
            forecaster, result = fit_and_backtest(series_data, config, on_epoch=progress.epoch, **settings)
        if save_model:
            progress.summary(forecaster, streamcast.save(forecaster, save_model))
        scored = f"{config.cell} fitted without the scored windows"
    _notes(result.notes, quiet)
    for warning in result.warnings:
        _warn(warning)
    _print_backtest(result, scored, series_data.source, as_json, output, quiet)


def _only_when_fitting(ctx: click.Context, save_model: str | None) -> None:
    """With -m nothing is fitted: a fit option given anyway is a mistake worth saying so."""
    from dataclasses import fields

    from streamcast.training import FitConfig

    names = {f.name for f in fields(FitConfig)} - {"covariates"}
    for param in ctx.command.params:
        if param.name in names and ctx.get_parameter_source(param.name) != click.core.ParameterSource.DEFAULT:
            raise UsageError(f"{param.opts[0]} sets how backtest fits a model, but -m scores a saved one: drop one of them")
    if save_model:
        raise UsageError("--save-model keeps the model backtest fits, but -m scores a saved one: drop one of them")


def _notes(notes, quiet: bool) -> None:
    if not quiet:
        for note in notes:
            click.echo(f"note: {note}", err=True)


def _print_backtest(result, scored: str, source: str, as_json: bool, output: str | None, quiet: bool) -> None:
    """The tables are the result: rich on a terminal, CSV in a pipe (unless -o), JSON on request."""
    from streamcast.output import write_frame

    if output:
        write_frame(result.to_frame(), output)
    if as_json:
        click.echo(json.dumps({"model": scored, "data": source, **result.to_dict()}, indent=2))
    elif sys.stdout.isatty():
        from streamcast.display import print_backtest

        print_backtest(result, f"backtest: {scored} on {source}")
    elif not output:
        write_frame(result.to_frame(), "-")
    if output and not quiet:
        click.echo(f"wrote {output}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("data", required=False)
@model_option
@data_options
@click.option("-o", "--output", required=True, metavar="PATH", help="The picture to write: .png, .svg or .pdf.")
@click.option("--series", multiple=True, metavar="ID", help="Draw this series (repeatable) [default: the first 4].")
@click.option("--as-of", metavar="TIMESTAMP", help="Forecast from this past time and draw the actual values after it.")
@click.option("--horizon", type=int, help="Steps to forecast [default: the trained horizon].")
@click.option("--history", type=int, metavar="N", help="Steps of history drawn before the origin [default: 4 x horizon].")
@click.option("-q", "--quiet", is_flag=True, help="No notes on stderr.")
def plot(data, model_path, id_col, time_col, target, covariates, output, series, as_of, horizon, history, quiet):
    """Draw chosen series: their history, the forecast and its interval, and the actual values after
    the origin when known (with --as-of). With no DATA, re-reads the data file recorded in the model.

    \b
      streamcast plot -m model.streamcast data.parquet --series meter_01 -o meter_01.png
      streamcast plot --as-of 2024-03-25T12:00 --series meter_01 --series meter_04 -o check.svg
    """
    from streamcast.forecasting import forecast as run_forecast
    from streamcast.plotting import check_figure_path, plot_forecasts

    check_figure_path(output)
    forecaster = streamcast.load(model_path)
    series_data = _read_for_model(forecaster, data, id_col, time_col, target, covariates)
    _notes(series_data.notes, quiet)
    chosen = series or series_data.series_ids[:4]
    if not series and len(series_data.series_ids) > 4:
        _notes([f"drew the first 4 of {len(series_data.series_ids)} series; choose others with --series ID"], quiet)
    table = run_forecast(forecaster, series_data, horizon=horizon, as_of=as_of, series=chosen)
    title = f"{model_path}: {forecaster.horizon if horizon is None else horizon}-step forecast" + (f" as of {as_of}" if as_of else "")
    plot_forecasts(series_data, table, output, history=history, title=title)
    if not quiet:
        click.echo(f"wrote {output}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
