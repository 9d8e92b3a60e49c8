"""Time zones: the data's zone is kept, recorded in the model, and data served in another zone is
brought into the model's, with a warning, so that calendar features never shift between training
and serving (the train/serve skew the design exists to prevent)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import polars as pl

from streamcast.errors import DataError, UsageError

if TYPE_CHECKING:
    from streamcast.reading import SeriesFrame

NAIVE = "no time zone"


def zone_of(timestamps: pl.Series) -> str | None:
    """The zone of a timestamp column (None: naive datetimes or a step index)."""
    return getattr(timestamps.dtype, "time_zone", None)


def describe(zone: str | None) -> str:
    return zone or NAIVE


def to_zone(timestamps: pl.Series, zone: str | None, where: str) -> pl.Series:
    """`timestamps` in `zone`: zoned ones converted (the same instants), naive ones read as that
    zone's local times; `zone=None` keeps the local wall times and drops the zone."""
    if not isinstance(timestamps.dtype, pl.Datetime) or zone_of(timestamps) == zone:
        return timestamps
    if zone is None:
        return timestamps.dt.replace_time_zone(None)
    check_zone_name(zone)
    if zone_of(timestamps) is not None:
        return timestamps.dt.convert_time_zone(zone)
    try:
        return timestamps.dt.replace_time_zone(zone, ambiguous="raise", non_existent="raise")
    except pl.exceptions.PolarsError:
        raise DataError(
            f"{where}: a local time does not exist or is ambiguous in {zone} (a clock change): write "
            "the times with their UTC offset, or as a zoned Parquet column"
        ) from None


def check_zone_name(zone: str) -> None:
    """Refuse a zone name polars does not know before any work is done."""
    try:
        pl.Series([0], dtype=pl.Datetime("us")).dt.replace_time_zone(zone)
    except pl.exceptions.PolarsError:
        raise UsageError(
            f"unknown time zone {zone!r}: give an IANA name such as Europe/Berlin or UTC"
        ) from None


def offset_note(text: pl.Series, name: str) -> list[str]:
    """Timestamps written with UTC offsets are read as UTC: say so when the offsets are not zero,
    since hours and weekdays then follow UTC, not the local clock the offsets came from."""
    offsets = text.str.extract(r"([+-]\d{2}:?\d{2})$").drop_nulls().unique().sort()
    offsets = offsets.filter(~offsets.is_in(["+00:00", "+0000", "-00:00"]))
    if offsets.len() == 0:
        return []
    shown = ", ".join(offsets.head(3).to_list())
    return [
        f"timestamps in {name!r} carry UTC offsets ({shown}) and are read in UTC, so hours and weekdays "
        "follow UTC; to keep the local calendar pass --time-zone ZONE (e.g. Europe/Berlin)"
    ]


def in_zone(data: SeriesFrame, zone: str | None) -> tuple[SeriesFrame, str | None]:
    """`data` with its timestamps (and its filled rows') in `zone`, and the warning due when the
    source's zone was another."""
    if zone_of(data.frame["timestamp"]) != zone:
        frame = data.frame.with_columns(to_zone(data.frame["timestamp"], zone, data.source))
        filled = data.filled
        if filled is not None:
            filled = filled.with_columns(to_zone(filled["timestamp"], zone, data.source))
        data = replace(data, frame=frame, filled=filled)
    if data.source_zone == zone:
        return data, None
    return data, served_message(data.source, data.source_zone, zone)


def served_message(source: str, data_zone: str | None, model_zone: str | None) -> str:
    """The warning for data served in another zone than the model's."""
    if model_zone is None:
        done = f"read as local {data_zone} wall times"
    elif data_zone is None:
        done = f"read as {model_zone} local times"
    else:
        done = f"converted to {model_zone}, the same instants"
    return (
        f"{source}: timestamps are in {describe(data_zone)} but the model was trained in "
        f"{describe(model_zone)}: {done}, so that calendar features match training"
    )
