"""`streamcast forecast` and `streamcast plot`: batch forecasts from a saved model, as a table or a picture."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

import streamcast
from streamcast.cli.options import (
    CONTEXT,
    data_options,
    device_option,
    model_option,
    notes,
    read_for_model,
    reader_for_model,
    threads_option,
    warn,
)
from streamcast.errors import UsageError

if TYPE_CHECKING:
    import polars as pl


@click.command(context_settings=CONTEXT)
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
    help="Write .csv, .parquet or .jsonl atomically instead of CSV on stdout; a folder (OUT/) gets "
    "the part OUT/part-K-of-N.parquet.",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="K/N",
    help="Forecast only shard K of N (0 <= K < N), the series Kafka's keyed partitioner puts in "
    "partition K [default: all; under torchrun, the rank's shard].",
)
@click.option(
    "--batch-series",
    type=int,
    metavar="N",
    help="Series read and forecast at a time [default: 2048]: memory follows N, not the data.",
)
@click.option(
    "--lock-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for another run writing the same output.",
)
@click.option(
    "--keep-names",
    is_flag=True,
    help="Name the id and time columns as the data does (e.g. store, when), not series_id and timestamp, so that the output joins back to its table.",
)
@threads_option
@device_option
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
    shard_text,
    batch_series,
    lock_timeout,
    keep_names,
    threads,
    device,
    quiet,
):
    """Forecast every series from a saved model; CSV on stdout unless -o.

    With no DATA, re-reads the data file recorded in the model, so a cron job sees the newest rows.
    Series are read and forecast --batch-series at a time (a Parquet file by a filter on its ids),
    so memory does not grow with their number. With --shard K/N (or under torchrun) only shard K's
    series; -o OUT/ then writes the part OUT/part-K-of-N.parquet of one Parquet dataset.

    \b
      streamcast forecast --horizon 24 > forecast.csv
      streamcast forecast new.parquet -m model.streamcast --series meter_01 -o out.parquet
      streamcast forecast --as-of 2024-03-01T00:00 --horizon 48
      streamcast forecast big.parquet --shard 0/4 -o forecasts/
      torchrun --nproc-per-node 4 -m streamcast forecast big.parquet -o forecasts/
    """
    from streamcast.locking import output_lock
    from streamcast.output import check_output_path, write_frames
    from streamcast.parts import choose_shard, make_dataset_folder, output_for
    from streamcast.threads import set_process_threads

    if not lock_timeout >= 0:  # NaN too
        raise UsageError("--lock-timeout must be >= 0 seconds")
    shard, from_torchrun = choose_shard(shard_text)
    make_dataset_folder(output)
    output = output_for(output, shard, from_torchrun)
    set_process_threads(threads)
    settings = {"horizon": horizon, "context": context, "as_of": as_of, "threads": threads}
    columns = (id_col, time_col, target, covariates)
    choice = {
        "series": series,
        "shard": shard,
        "batch_series": batch_series,
        "keep_names": keep_names,
        "device": device,
    }
    if output == "-":
        write_frames(_forecast_tables(model_path, data, columns, choice, settings, quiet), "-")
        return
    check_output_path(output)
    # The whole run holds the lock, not just the write: a run that started earlier on older data
    # must not finish later and replace a newer forecast.
    with output_lock(output, lock_timeout):
        write_frames(_forecast_tables(model_path, data, columns, choice, settings, quiet), output)


def _forecast_tables(model_path, data, columns: tuple, choice: dict, settings: dict, quiet: bool):
    """Load, read batch by batch, forecast, and tell the user what they should know about the result."""
    from streamcast.batches import BATCH_SERIES
    from streamcast.forecasting import forecast_source, with_source_names

    forecaster = streamcast.load(model_path).to(choice["device"])
    reader = reader_for_model(forecaster, data, *columns)
    ids = reader.share(series=choice["series"], shard=choice["shard"])
    _warn_about_horizon(forecaster, settings["horizon"], quiet)
    seen = _Seen(forecaster, quiet)
    batch_series = BATCH_SERIES if choice["batch_series"] is None else choice["batch_series"]
    series = ids if choice["series"] else ()
    tables = forecast_source(
        forecaster, reader, ids, batch_series=batch_series, on_batch=seen.batch, series=series, **settings
    )
    for table in tables:
        seen.table(table)
        yield with_source_names(table, forecaster.columns) if choice["keep_names"] else table
    seen.finish(settings["as_of"])


class _Seen:
    """What the batches told along the way, said once: reading notes, new series, a late --as-of."""

    def __init__(self, forecaster, quiet: bool) -> None:
        self.forecaster = forecaster
        self.quiet = quiet
        self.said: set[str] = set()
        self.last = None
        self.new: list[str] = []
        self.dtype = None

    def batch(self, data) -> None:
        notes([n for n in data.notes if n not in self.said], self.quiet)
        self.said.update(data.notes)
        if self.last is None:  # every batch comes from one source, in one zone
            moved = self.forecaster.in_model_zone(data)[1]
            if moved and not self.quiet:
                warn(moved)
        last = data.frame["timestamp"].max()
        self.last = last if self.last is None else max(self.last, last)
        self.dtype = data.frame["timestamp"].dtype

    def table(self, table: pl.DataFrame) -> None:
        import polars as pl

        self.new += table.filter(pl.col("new_series"))["series_id"].unique(maintain_order=True).to_list()

    def finish(self, as_of: str | None) -> None:
        if self.quiet:
            return
        if as_of is not None and self.last is not None:
            from streamcast.forecasting import parse_as_of

            if parse_as_of(as_of, self.dtype) > self.last:
                warn(
                    f"--as-of {as_of} is after the last observation ({self.last}): forecasting from the last one"
                )
        if self.new:
            warn(
                f"{len(self.new)} series the model never saw (e.g. {self.new[0]!r}) were scaled by their own history; see the new_series column"
            )


def _warn_about_horizon(forecaster, horizon: int | None, quiet: bool) -> None:
    if not quiet and horizon is not None and horizon > forecaster.horizon:
        warn(
            f"--horizon {horizon} is longer than the trained {forecaster.horizon}: later steps are fed the model's own forecasts, and accuracy degrades"
        )


def _warn_about_settings(
    forecaster, series_data, horizon: int | None, as_of: str | None, quiet: bool
) -> None:
    """Settings that run but may not give what the user meant: say so before the result."""
    from streamcast.forecasting import parse_as_of

    if quiet:
        return
    if horizon is not None and horizon > forecaster.horizon:
        warn(
            f"--horizon {horizon} is longer than the trained {forecaster.horizon}: later steps are fed the model's own forecasts, and accuracy degrades"
        )
    if as_of is not None:
        cutoff = parse_as_of(as_of, series_data.frame["timestamp"].dtype)
        last = series_data.frame["timestamp"].max()
        if cutoff > last:
            warn(f"--as-of {as_of} is after the last observation ({last}): forecasting from the last one")


@click.command(context_settings=CONTEXT)
@click.argument("data", required=False)
@model_option
@data_options
@click.option(
    "-o", "--output", required=True, metavar="PATH", help="The picture to write: .png, .svg or .pdf."
)
@click.option(
    "--series", multiple=True, metavar="ID", help="Draw this series (repeatable) [default: the first 4]."
)
@click.option(
    "--as-of", metavar="TIMESTAMP", help="Forecast from this past time and draw the actual values after it."
)
@click.option("--horizon", type=int, help="Steps to forecast [default: the trained horizon].")
@click.option(
    "--history",
    type=int,
    metavar="N",
    help="Steps of history drawn before the origin [default: 4 x horizon].",
)
@threads_option
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No notes on stderr.")
def plot(
    data,
    model_path,
    id_col,
    time_col,
    target,
    covariates,
    output,
    series,
    as_of,
    horizon,
    history,
    threads,
    device,
    quiet,
):
    """Draw chosen series: their history, the forecast and its interval, and the actual values after
    the origin when known (with --as-of). With no DATA, re-reads the data file recorded in the model.

    \b
      streamcast plot -m model.streamcast data.parquet --series meter_01 -o meter_01.png
      streamcast plot --as-of 2024-03-25T12:00 --series meter_01 --series meter_04 -o check.svg
    """
    from streamcast.forecasting import forecast as run_forecast
    from streamcast.plotting import check_figure_path, plot_forecasts
    from streamcast.threads import set_process_threads

    check_figure_path(output)
    set_process_threads(threads)
    forecaster = streamcast.load(model_path).to(device)
    series_data = read_for_model(forecaster, data, id_col, time_col, target, covariates, quiet=quiet)
    notes(series_data.notes, quiet)
    chosen = series or series_data.series_ids[:4]
    if not series and len(series_data.series_ids) > 4:
        notes(
            [f"drew the first 4 of {len(series_data.series_ids)} series; choose others with --series ID"],
            quiet,
        )
    _warn_about_settings(forecaster, series_data, horizon, as_of, quiet)
    table = run_forecast(
        forecaster, series_data, horizon=horizon, as_of=as_of, series=chosen, threads=threads
    )
    title = f"{model_path}: {forecaster.horizon if horizon is None else horizon}-step forecast" + (
        f" as of {as_of}" if as_of else ""
    )
    plot_forecasts(series_data, table, output, history=history, title=title)
    if not quiet:
        click.echo(f"wrote {output}", err=True)
