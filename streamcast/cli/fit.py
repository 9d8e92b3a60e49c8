"""`streamcast fit` and `streamcast info`: train a model file, and show what is in one."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

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
    parse_floats,
    threads_option,
    time_zone,
    with_horizon,
)
from streamcast.errors import ModelFileError, UsageError
from streamcast.modelheader import DEFAULT_MODEL_PATH


@click.command(context_settings=CONTEXT)
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
@click.option(
    "--auto",
    is_flag=True,
    help="Try a few configurations (cell, width, learning rate, head window, seed) within --time-budget; keep the best on validation, or the median of the best three when that validates better.",
)
@click.option(
    "--time-budget",
    type=float,
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="With --auto: no candidate starts an epoch after this many seconds.",
)
@click.option(
    "--jobs",
    default="auto",
    show_default=True,
    metavar="N|auto",
    callback=lambda ctx, param, value: _jobs(value),
    help="Members of the ensemble (or --auto candidates) trained at once, each in its own process; "
    "an ensemble is the same for any N (--auto's budget may let more candidates train). "
    "auto: as many as the cores other work leaves free, or a few more where the members do not "
    "divide evenly among them, so that no core idles at the end (one for a short fit).",
)
@threads_option
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def fit(
    data,
    id_col,
    time_col,
    target,
    covariates,
    output,
    quantiles,
    report,
    auto,
    time_budget,
    jobs,
    threads,
    device,
    quiet,
    **options,
):
    """Train a forecaster on DATA (Parquet, CSV, .csv.gz, or - for CSV on stdin).

    \b
      streamcast fit sample_data/load_hourly.parquet --target load --covariate temperature
      streamcast fit data.csv --auto --time-budget 120
      streamcast fit data.csv --cell lstm --hidden 128 --bptt 96 --horizon 48 -o lstm.streamcast
      streamcast fit data.csv --report training.png
      torchrun --nproc-per-node 2 -m streamcast fit dataset/ --threads 1
      streamcast fit load.csv --target load --future-covariate temperature --holidays DE
    """
    from streamcast.display import FitProgress
    from streamcast.distributed import world_from_env
    from streamcast.threads import set_process_threads
    from streamcast.torchrun import fit_parallel

    config = fit_config(options, quantiles=parse_floats(quantiles), covariates=tuple(covariates))
    rank, world_size, _ = world_from_env()
    if auto and world_size > 1:
        raise UsageError("--auto tries its candidates in one process: run it without torchrun")
    if data != "-" and Path(output).resolve() == Path(data).resolve():
        raise UsageError(f"-o {output} is the data file: the model would overwrite it; choose another path")
    if auto:
        from streamcast.autofit import check_budget

        if click.get_current_context().get_parameter_source("ensemble") is ParameterSource.COMMANDLINE:
            raise UsageError("--auto chooses the ensemble itself: leave out --ensemble")
        check_budget(time_budget)
    check_writable(output, "model")
    if report:
        from streamcast.plotting import check_figure_path

        check_figure_path(report)  # before training, not after
    set_process_threads(threads)
    read_options = {
        "id_col": id_col,
        "time_col": time_col,
        "target": target,
        "covariates": covariates,
        "max_gap": long_gap(),
        "glitch_ratio": glitch_ratio(),
        "time_zone": time_zone(),
        "future_covariates": config.future_covariates,
        "static": config.static,
    }
    # Under torchrun, rank 0 alone reports and writes the model.
    progress = FitProgress(quiet=quiet or rank != 0, epochs=config.epochs, members=config.ensemble)

    def horizon_for(config, series):
        return with_horizon(config, options["horizon"], series.freq, quiet or rank != 0)

    if auto:
        from streamcast.autofit import fit_auto
        from streamcast.reading import read_series

        series = read_series(data, **read_options)
        progress.notes(series.notes)
        config = horizon_for(config, series)
        progress.members, progress.budget = 0, time_budget  # unknown: as many as the budget allows
        with progress:
            forecaster = fit_auto(
                series,
                config,
                time_budget,
                on_epoch=progress.epoch,
                threads=threads,
                device=device,
                jobs=jobs,
            )
    else:
        with progress:  # the reading notes print above the live table
            forecaster = fit_parallel(
                data,
                config,
                progress.epoch,
                threads=threads,
                device=device,
                on_read=progress.notes,
                adjust=horizon_for,
                jobs=jobs,
                **read_options,
            )
    if rank == 0:
        path = streamcast.save(forecaster, output)
        progress.summary(forecaster, path)
        if report:
            _training_report(forecaster, report, path, quiet)
    # Interrupted: the best model is saved, but a script must not mistake this for a full run.
    status = 130 if forecaster.info["interrupted"] else 0
    if world_size > 1:
        _leave_torchrun(status)
    if status:
        sys.exit(status)


def _jobs(value: str) -> int | str:
    """`auto` or a count of at least one, checked before the data is read (without torch)."""
    from streamcast.threads import check_jobs

    return value if value == "auto" else check_jobs(value)


def _leave_torchrun(status: int) -> None:
    """End a torchrun rank at once, its output flushed. At interpreter teardown gloo's worker
    threads now and then abort a finished rank (SIGABRT, "terminate called without an active
    exception", seen in the 2-rank test), and torchrun then reports the run failed although the
    model is written. Nothing is left to tidy: the process group is destroyed, the file closed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _training_report(forecaster, report: str, model_path, quiet: bool) -> None:
    from streamcast.plotting import plot_training

    cfg = forecaster.info["fit_config"]
    title = f"{model_path}: {cfg['cell']}, hidden {cfg['hidden_size']}, bptt {cfg['bptt']}, lr {cfg['lr']:g}"
    plot_training(forecaster.info["history"], report, clip=cfg["clip"], title=title)
    if not quiet:
        click.echo(f"wrote {report}", err=True)


@click.command(context_settings=CONTEXT)
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-m",
    "--model",
    "model_option",
    type=click.Path(dir_okay=False),
    help=f"The model file, as every other command takes it (or give it as PATH) [default: {DEFAULT_MODEL_PATH}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metadata as JSON on stdout.")
def info(path, model_option, as_json):
    """Show what is inside a model file: config, data, metrics and gradient health.

    \b
      streamcast info model.streamcast
      streamcast info -m model.streamcast
      streamcast info --json | jq .info.gradient_health
    """
    from streamcast.modelheader import read_metadata

    if path and model_option and path != model_option:
        raise UsageError(f"two model files given ({path} and -m {model_option}): give one")
    model_path = path or model_option or DEFAULT_MODEL_PATH

    meta = read_metadata(model_path)
    if as_json:
        # Strict JSON: a metric that is not a number (a diverged epoch) is null, never a bare NaN.
        click.echo(json.dumps(_finite(meta), indent=2, sort_keys=True, allow_nan=False))
        return
    from streamcast.display import print_info

    try:
        print_info(meta, model_path)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelFileError(f"{model_path}: the model file's metadata is damaged (missing {exc})") from None


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
