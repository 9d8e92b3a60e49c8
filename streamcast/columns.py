"""Which source column is the series id, the time and the target: told from names, types and content.

A reading is taken only when it is sure; when two columns could play a part, or rows clearly hold
several series that no column tells apart, reading stops with one line naming the candidates and
the option that settles it (`--id-col`, `--time-col`, `--target`).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from streamcast.column_names import ID_NAMES, TIME_NAMES
from streamcast.errors import DataError, UsageError

SAMPLE_ROWS = 1_000  # values tried when asking whether a text column holds timestamps
_ID_TYPES = (pl.String, pl.Categorical, pl.Enum)


def parse_timestamps(text: pl.Series) -> pl.Series | None:
    """The parsed datetimes (null where a value does not parse), or None when no format fits."""
    if text.str.contains(r"^\d{4}-\d{2}$").all():  # "2024-01": monthly data
        return (text + "-01").str.to_datetime("%Y-%m-%d", strict=False, time_unit="us")
    try:
        return text.str.to_datetime(strict=False, time_unit="us")
    except pl.exceptions.PolarsError:
        return None


def is_temporal(col: pl.Series) -> bool:
    """A date or datetime column, or text whose values (a sample of them) all parse as timestamps."""
    if col.dtype == pl.Date or isinstance(col.dtype, pl.Datetime):
        return True
    if col.dtype != pl.String:
        return False
    sample = col.drop_nulls().head(SAMPLE_ROWS).str.strip_chars()
    # Digits and a date or time separator: "12" or "north" never count, whatever a parser makes of them.
    if sample.len() == 0 or not sample.str.contains(r"^\d.*[-/:.T ]").all():
        return False
    parsed = parse_timestamps(sample)
    return parsed is not None and parsed.null_count() == 0


def named(cols: Sequence[str], names: Sequence[str], taken: Sequence) -> str | None:
    """The first of `names` present among `cols` (any case), skipping columns already taken."""
    lower = {c.lower(): c for c in cols if c not in taken}
    return next((lower[n] for n in names if n in lower), None)


def given_column(cols: Sequence[str], given: str, flag: str, taken: Sequence) -> str:
    """The column an option names, checked."""
    if given not in cols:
        raise UsageError(
            f"column {given!r} (from {flag}) is not in the data; the columns are: {', '.join(cols)}"
        )
    if given in taken:
        raise UsageError(f"column {given!r} (from {flag}) is already used for another part")
    return given


def find_time(raw: pl.DataFrame, taken: Sequence, where: str) -> tuple[str | None, list[str]]:
    """The time column when none was given: a known name, else the one temporal column."""
    by_name = named(raw.columns, TIME_NAMES, taken)
    temporal = [c for c in raw.columns if c not in taken and is_temporal(raw[c])]
    if by_name is not None and (by_name in temporal or not temporal):
        return by_name, []
    others = [c for c in temporal if c != by_name]
    if len(temporal) == 1 and by_name is None:
        return temporal[0], [
            f"read {temporal[0]!r} as the time (it holds timestamps); pass --time-col to choose another"
        ]
    if not temporal:
        return None, []
    candidates = ([by_name] if by_name else []) + others
    raise DataError(
        f"{where}: cannot tell which column is the time ({_listed(candidates)} could be); "
        f"pass --time-col COL, e.g. --time-col {candidates[0]}"
    )


def find_id(
    raw: pl.DataFrame, time: str | None, target: str | None, taken: Sequence, where: str
) -> tuple[str | None, list[str]]:
    """The series id column when none was given: a known name, else the one column whose values
    tell apart the rows that share a timestamp (or, without a time column, text in blocks)."""
    by_name = named(raw.columns, ID_NAMES, taken)
    if by_name is not None:
        return by_name, []
    skip = {*taken, target}
    possible = [c for c in raw.columns if c not in skip and _id_typed(raw[c], time is not None)]
    possible = [c for c in possible if 2 <= raw[c].n_unique() <= raw.height // 2]
    if time is None:
        sure = [c for c in possible if raw[c].rle_id().max() + 1 == raw[c].n_unique()]
    else:
        repeats = raw.height - raw[time].n_unique()
        if repeats == 0:
            return None, []  # one row per timestamp: one series (or a wide table)
        sure = [c for c in possible if raw.select(pl.struct(c, time).n_unique()).item() == raw.height]
        if len(sure) > 1:
            # A true id has one value per series present at the busiest timestamp, a measured
            # quantity that happens to differ there has many more.
            busiest = raw[time].value_counts()["count"].max()
            sure = [c for c in sure if raw[c].n_unique() == busiest] or sure
        if not sure and possible and 2 * repeats >= raw.height:
            raise DataError(
                f"{where}: timestamps in {time!r} repeat ({repeats} of {raw.height} rows), so the rows "
                f"hold several series, but no column tells them apart for sure; pass --id-col COL, "
                f"e.g. --id-col {possible[0]}"
            )
    if len(sure) == 1:
        n = raw[sure[0]].n_unique()
        return sure[0], [f"read {sure[0]!r} as the series id ({n} series); pass --id-col to choose another"]
    if len(sure) > 1:
        raise DataError(
            f"{where}: cannot tell which column names the series ({_listed(sure)} could); "
            f"pass --id-col COL, e.g. --id-col {sure[0]}"
        )
    return None, []


def _id_typed(col: pl.Series, with_time: bool) -> bool:
    """Text ids always; integer ids only beside a time column, where repeated timestamps vouch
    for them (alone, an integer column in blocks is as likely a year or a batch number)."""
    return isinstance(col.dtype, _ID_TYPES) or (with_time and col.dtype.is_integer())


def _listed(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
