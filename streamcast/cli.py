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
from streamcast.errors import StreamcastError, UsageError
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
@click.option(
    "--cell",
    type=click.Choice(["rnn", "rnn-relu", "lstm", "gru"]),
    default="gru",
    show_default=True,
    help="Recurrent cell.",
)
@click.option("--hidden", "hidden_size", type=int, default=64, show_default=True, help="Hidden state size.")
@click.option(
    "--layers",
    "num_layers",
    type=int,
    default=1,
    show_default=True,
    help="Stacked recurrent layers.",
)
@click.option(
    "--dropout",
    type=float,
    default=0.0,
    show_default=True,
    help="Dropout between layers and before the head.",
)
@click.option(
    "--conv",
    type=int,
    default=0,
    show_default=True,
    help="Causal 1-D convolution kernel over the inputs (0 = off).",
)
@click.option(
    "--ar",
    type=int,
    help="Linear highway over the last N values, started as seasonal naive (0 = off) [default: one season].",
)
@click.option(
    "--horizon", type=int, default=24, show_default=True, help="Steps ahead forecast at every step."
)
@click.option(
    "--quantiles",
    metavar="Q,Q,..",
    help="Also learn these quantiles (pinball loss), e.g. 0.1,0.5,0.9.",
)
@click.option("--bptt", type=int, default=48, show_default=True, help="Truncated BPTT chunk length in steps.")
@click.option(
    "--batch-size",
    type=int,
    default=32,
    show_default=True,
    help="Lanes trained in parallel (fewer on small data).",
)
@click.option(
    "--epochs",
    type=int,
    default=30,
    show_default=True,
    help="Most epochs (early stopping may end sooner).",
)
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Learning rate.")
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "adamw", "rmsprop", "sgd"]),
    default="adam",
    show_default=True,
)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option(
    "--lr-schedule",
    type=click.Choice(["plateau", "cosine", "none"]),
    default="plateau",
    show_default=True,
)
@click.option(
    "--clip",
    type=float,
    default=1.0,
    show_default=True,
    help="Clip the global gradient norm (0 = off).",
)
@click.option(
    "--clip-value",
    type=float,
    default=0.0,
    show_default=True,
    help="Clip each gradient value (0 = off).",
)
@click.option("--loss", type=click.Choice(["mae", "mse", "huber"]), default="mae", show_default=True)
@click.option(
    "--scaling",
    type=click.Choice(["mean", "std"]),
    default="mean",
    show_default=True,
    help="Per-series scale: mean absolute value or standard deviation.",
)
@click.option("--val-size", type=int, help="Validation steps at the end of each series [default: horizon].")
@click.option(
    "--patience",
    type=int,
    default=5,
    show_default=True,
    help="Epochs without improvement before stopping.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def fit(data, id_col, time_col, target, covariates, output, quantiles, quiet, **options):
    """Train a forecaster on DATA (Parquet, CSV, .csv.gz, or - for CSV on stdin).

    \b
      streamcast fit sample_data/load_hourly.parquet --target load --covariate temperature
      streamcast fit data.csv --cell lstm --hidden 128 --bptt 96 --horizon 48 -o lstm.streamcast
    """
    from streamcast.display import FitProgress
    from streamcast.reading import read_series
    from streamcast.training import FitConfig
    from streamcast.training import fit as fit_model

    config = FitConfig(quantiles=_floats(quantiles), covariates=tuple(covariates), **options)
    series = read_series(data, id_col=id_col, time_col=time_col, target=target, covariates=covariates)
    progress = FitProgress(quiet=quiet)
    progress.notes(series.notes)
    with progress:
        forecaster = fit_model(series, config, on_epoch=progress.epoch)
    path = streamcast.save(forecaster, output)
    progress.summary(forecaster, path)


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
    from streamcast.locking import output_lock
    from streamcast.output import check_output_path, write_frame

    if output:
        check_output_path(output)
    forecaster = streamcast.load(model_path)
    series_data = _read_for_model(forecaster, data, id_col, time_col, target, covariates)
    if horizon and horizon > forecaster.horizon and not quiet:
        _warn(
            f"--horizon {horizon} is longer than the trained {forecaster.horizon}: later steps are fed the model's own forecasts, and accuracy degrades"
        )
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
    if not source or source in ("-", "<frame>"):
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
@model_option
@data_options
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["csv", "jsonl"]),
    help="Input lines [default: detected from the first line].",
)
@click.option("--output-format", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option(
    "--every", type=int, default=1, show_default=True, help="Emit every Nth forecast of each series."
)
@click.option(
    "--warmup", "warmup_data", metavar="DATA", help="Pre-warm series states from this history file."
)
@click.option(
    "--warmup-ticks", type=int, help="Ticks a new series scales itself over [default: two seasons]."
)
@click.option(
    "--state", "state_path", metavar="FILE", help="Checkpoint every series' state here, and resume from it."
)
@click.option(
    "--checkpoint-every", type=int, default=10_000, show_default=True, help="Lines between checkpoints."
)
@click.option(
    "--checkpoint-seconds", type=float, default=30.0, show_default=True, help="Seconds between checkpoints."
)
@click.option(
    "--max-gap",
    type=int,
    default=24,
    show_default=True,
    help="Longest gap (periods) filled; longer resets the series.",
)
@click.option("--strict", is_flag=True, help="Stop with an error at the first bad line.")
@click.option("-q", "--quiet", is_flag=True, help="No per-line reports on stderr (the summary stays).")
def stream(
    model_path,
    id_col,
    time_col,
    target,
    covariates,
    input_format,
    output_format,
    every,
    warmup_data,
    warmup_ticks,
    state_path,
    checkpoint_every,
    checkpoint_seconds,
    max_gap,
    strict,
    quiet,
):
    """Rolling forecasts: one line out for every observation on stdin, flushed at once.

    \b
      tail -f meter.csv | streamcast stream -m model.streamcast
      cat ticks.jsonl | streamcast stream --state stream.state --output-format csv
      producer | streamcast stream --warmup history.parquet --every 4
    """
    import signal

    from streamcast.stream_session import StreamOptions, StreamSession, read_batches

    if every < 1:
        raise UsageError("--every must be at least 1")
    forecaster = streamcast.load(model_path)
    if id_col or time_col or target:
        from dataclasses import replace

        cols = forecaster.columns
        forecaster.columns = replace(
            cols, id=id_col or cols.id, time=time_col or cols.time, target=target or cols.target
        )
    options = StreamOptions(
        input_format,
        output_format,
        every,
        state_path,
        checkpoint_every,
        checkpoint_seconds,
        max_gap,
        warmup_ticks,
        strict,
    )
    session = StreamSession(
        forecaster, options, warn=(lambda m: None) if quiet else lambda m: click.echo(m, err=True)
    )
    if warmup_data:
        warmed = session.prewarm(_read_for_model(forecaster, warmup_data, None, None, None, ()))
        click.echo(f"warmed {warmed} series from {warmup_data}", err=True)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    out = sys.stdout
    for lines in read_batches(sys.stdin.buffer, stop=lambda: stop["signal"] is not None):
        text = session.feed(lines)
        if text:
            out.write(text)
            out.flush()
        if session.checkpoint_due():
            session.checkpoint()
        if stop["signal"] is not None:
            break
    session.checkpoint()
    click.echo(f"stream: {session.counts.summary()}", err=True)
    if stop["signal"] == signal.SIGINT:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
