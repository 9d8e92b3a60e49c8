"""`streamcast stream`: options for the library's stream session, which does the work."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

import streamcast
from streamcast.atomic import check_writable
from streamcast.cli.options import (
    CONTEXT,
    glitch_ratio,
    model_option,
    serve_device_option,
    threads_option,
    warn,
)
from streamcast.errors import DataError, UsageError


@click.command(context_settings=CONTEXT)
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
@click.option(
    "--output-format",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="JSON objects or CSV rows, one per observation.",
)
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
    "--max-jump",
    type=int,
    default=1000,
    show_default=True,
    help="Periods ahead beyond which a line is taken only if its series' next line follows it.",
)
@click.option(
    "--max-series",
    type=int,
    metavar="N",
    help="Hold at most N series; beyond, the least recently seen are evicted [default: no limit].",
)
@click.option(
    "--idle-evict",
    metavar="DURATION",
    help="Evict series silent this long before the newest time seen, e.g. 7d, 12h (steps for a step index).",
)
@click.option(
    "--start",
    metavar="TIME",
    help="Time of a new series' first value when lines carry no time [default: now].",
)
@click.option(
    "--partition",
    metavar="K/N",
    help="Serve only the series of shard K of N (Kafka's keyed partitioning); skip and count the rest.",
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
@click.option(
    "--watch",
    is_flag=True,
    help="Score each observation against its one-step forecast: error, score, anomaly in every line.",
)
@click.option(
    "--anomaly-z",
    type=float,
    metavar="Z",
    help="An anomaly lies beyond Z standard deviations of the recent errors (quantile models: of the "
    "predicted interval) [default: 4; implies --watch].",
)
@click.option("--only-anomalies", is_flag=True, help="Print only the lines of anomalies (implies --watch).")
@click.option(
    "--metrics-port",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics on this port (all interfaces unless HOST; needs streamcast[metrics]).",
)
@threads_option
@serve_device_option
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
    watch,
    anomaly_z,
    only_anomalies,
    metrics_port,
    threads,
    device,
    quiet,
    **options,
):
    """Rolling forecasts: one line out for every observation on stdin (or INPUT), flushed at once.

    \b
      tail -f meter.csv | streamcast stream -m model.streamcast
      cat ticks.jsonl | streamcast stream --state stream.state --output-format csv
      producer | streamcast stream --warmup history.parquet --every 4 --learn --save-model live.streamcast
      producer | streamcast stream --only-anomalies --metrics-port 9108 | alert

    SIGHUP reloads the model file (-m) between micro-batches; series keep their states when its
    shapes match.
    """
    from pathlib import Path

    from streamcast.allocator import keep_freed_memory

    keep_freed_memory()  # before polars is imported: a long run's batches reuse memory (allocator.py)

    from streamcast.reading import read_series
    from streamcast.shards import parse_shard
    from streamcast.stream.config import LearnConfig
    from streamcast.stream.engine import StreamConfig, warm_up
    from streamcast.stream.input import parser_for
    from streamcast.stream.session import SessionOptions, StreamSession
    from streamcast.stream.state import StreamState, holds_learner
    from streamcast.stream.watch import WatchConfig

    watching = watch or only_anomalies or anomaly_z is not None
    watch_config = WatchConfig(**({"z": anomaly_z} if anomaly_z is not None else {})) if watching else None
    if save_model and not learn:
        raise UsageError("--save-model writes the model adapted by --learn: add --learn")
    if save_model and model_path != "-" and Path(save_model).resolve() == Path(model_path).resolve():
        raise UsageError(
            "--save-model is the -m model itself: a restart would load the adapted model, which the "
            "--state file does not belong to; write the adapted model to another path"
        )
    for path, what in ((state_path, "--state file"), (save_model, "--save-model file")):
        if path:
            check_writable(path, what)
    if not options["checkpoint_seconds"] > 0:  # NaN too; inf: only by count
        raise UsageError("--checkpoint-seconds must be a positive number of seconds")
    for name in ("checkpoint_every", "batch_lines"):
        if options[name] < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    partition = parse_shard(options["partition"], "--partition") if options["partition"] else None
    if learn and device is not None and device.type != "cpu":
        raise UsageError(f"--learn trains on the CPU: leave out --device {device}, or give --device cpu")
    _ignore_hangup_until_serving()
    # A state with an online learner resumes with torch: the learner serves its adapted weights.
    learned = bool(state_path) and holds_learner(state_path)
    forecaster = _load(model_path, device, learn or learned, threads)
    learn_config = LearnConfig(learn_rate, learn_window, learn_every) if learn else None
    metrics = _serve_metrics(metrics_port) if metrics_port is not None else None
    config = StreamConfig(
        warmup=options["warmup_ticks"],
        max_gap=options["max_gap"],
        every=options["every"],
        strict=options["strict"],
        start=_stream_start(start, forecaster.freq),
        learn=learn_config,
        watch=watch_config,
        max_jump=options["max_jump"],
        max_series=options["max_series"],
        idle_evict=_idle_evict(options["idle_evict"], forecaster.freq),
        partition=partition,
    )
    with _state_lock(state_path):
        if state_path and Path(state_path).exists():
            state = StreamState.load(state_path, forecaster)
            click.echo(
                f"resumed {len(state)} series from {state_path} ({state.accepted} observations so far)",
                err=True,
            )
        else:
            state = StreamState(forecaster)
        parser = parser_for(forecaster, id_col=id_col, time_col=time_col, target=target, fmt=input_format)
        if len(state):
            parser.fix_zone(state.time_zone)
        if warmup_data:
            cols = parser.columns
            history = read_series(
                warmup_data,
                id_col=cols.id,
                time_col=cols.time,
                target=cols.target,
                covariates=cols.covariates,
                time_zone=forecaster.time_zone,
                future_covariates=cols.future_covariates,
                static=forecaster.columns.static,
                glitch_ratio=glitch_ratio(forecaster),  # stream has no --glitch-ratio: the model's
            )
            history, moved = forecaster.in_model_zone(history)
            if moved:
                warn(moved)
            warmed = warm_up(forecaster, state, history, threads=threads, partition=partition)
            click.echo(f"warmed {len(warmed)} series from {warmup_data}", err=True)
        session_options = SessionOptions(
            output_format,
            state_path,
            options["checkpoint_every"],
            options["checkpoint_seconds"],
            save_model,
            options["batch_lines"],
            quiet,
            threads,
            only_anomalies,
            model_path if model_path != "-" else None,
            metrics,
        )
        session = StreamSession(
            forecaster, state, config, parser, session_options, sys.stdout.buffer, sys.stderr
        )
        if source == "-":
            code = session.run(sys.stdin.buffer)
        else:
            if not Path(source).is_file():
                what = "is a folder" if Path(source).is_dir() else "not found"
                raise DataError(
                    f"input {source!r} {what}: give a file of lines, or - (the default) for stdin"
                )
            with open(source, "rb") as f:
                code = session.run(f)
    sys.exit(code)


def _load(model_path: str, device, learn: bool, threads: int):
    """The model as `stream` serves it: by the numpy mirror of its network on the CPU (torch is
    never loaded: its import alone took 1.3-1.8 s of a start-up that aims at a first forecast within
    1 s), by torch on another device or where a learner trains it or serves its adapted weights;
    on `threads` threads."""
    from streamcast.threads import set_blas_threads, set_process_threads

    if device is None and not learn:
        from streamcast.modelparts import load_numpy

        set_blas_threads(threads)
        return load_numpy(model_path)
    from streamcast.devices import resolve_device

    set_process_threads(threads)
    return streamcast.load(model_path).to(device if device is not None else resolve_device("cpu"))


def _ignore_hangup_until_serving() -> None:
    """A SIGHUP sent while the stream starts (a refit finishing just then) must not kill it: the
    model is loaded after this, and the session's own handler takes over once lines flow."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _serve_metrics(text: str):
    """Start the Prometheus endpoint; a port that cannot be had is a usage error before any input."""
    from streamcast.stream.monitoring import StreamMetrics, parse_address

    host, port = parse_address(text)
    metrics = StreamMetrics()
    bound = metrics.serve(host, port)
    click.echo(f"metrics on http://{host}:{bound}/metrics", err=True)
    return metrics


@contextlib.contextmanager
def _state_lock(path: str | None) -> Iterator[None]:
    """One stream per state file: a second one would overwrite the first's checkpoints. Holding
    the lock, it removes the temporary files of a stream killed while checkpointing."""
    if path is None:
        yield
        return
    from streamcast.errors import LockTimeout
    from streamcast.locking import lock_path, output_lock

    try:
        with output_lock(path, 0):
            yield
    except LockTimeout:
        raise LockTimeout(
            f"another stream is using the state file {path} (its lock {lock_path(path)} is held); "
            "stop that stream first, or pass another --state file"
        ) from None


def _idle_evict(text: str | None, freq: str) -> int | None:
    """--idle-evict as microseconds, or as steps for a model without a time axis."""
    if text is None:
        return None
    from streamcast.features import freq_seconds

    if freq.endswith("i"):
        try:
            return int(text.removesuffix("i"))
        except ValueError:
            raise UsageError(
                f"--idle-evict {text!r}: this model counts steps, give a number of steps"
            ) from None
    try:
        seconds = freq_seconds(text.strip())
    except ValueError:
        seconds = None
    if not seconds:
        raise UsageError(
            f"--idle-evict {text!r} is not a duration; use a number and a unit, e.g. 30m, 12h, 7d"
        )
    return int(seconds * 1_000_000)


def _stream_start(text: str | None, freq: str):
    if text is None:
        return None
    from streamcast.stream.fields import MAX_STEP
    from streamcast.stream.times import YEARS

    if freq.endswith("i"):
        try:
            step = int(text)
        except ValueError:
            raise UsageError(f"--start {text!r}: this model counts steps, give a step number") from None
        if abs(step) > MAX_STEP:
            raise UsageError(f"--start {text!r} is out of range (beyond ±{MAX_STEP:g} steps)")
        return step
    from datetime import datetime

    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--start {text!r} is not a timestamp; use ISO 8601, e.g. 2024-03-01T12:00"
        ) from None
    if not YEARS[0] <= start.year <= YEARS[1]:
        raise UsageError(
            f"--start {text!r} is out of range: give a time in the years {YEARS[0]} to {YEARS[1]}"
        )
    return start
