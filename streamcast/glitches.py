"""Glitches: values so far outside their series that they can only be errors, read as missing.

A logger's sentinel (-9999, 99999) or a corrupted reading (1e6 in a load of tens) is not data. Left
in, one such value ruins a model: a single 1e6 among ETTh1's 7,200 training hours of one column
raised the seven columns' validation MSE from 0.6705 to 0.7743 (every column worse, through the
shared network and the pooled least-squares highway), and alone in the oil temperature it took
the network from 0.0909 to 0.6866. So a value is a glitch where it lies more than `ratio` times
its series' typical deviation (the median absolute deviation from the median; where over half
the values sit at the median, as in intermittent counts, the mean of the other deviations) beyond
the range of the series' middle 98% of values. Genuine extremes stay well inside 300: at most 22
typical deviations on M4 Hourly, 4 on ETT, 47 for one order of 1,000 among counts of 1 (the
order's own size counts in that mean, so it can never pass the number of non-zero counts), 35 for
a series that grows by five orders of magnitude (seven would pass: 470). A -9999 in a load of
tens is about 500 out, 1e6 tens of thousands. Glitches are read as missing, so they are
interpolated as gaps are, never scored as observations, and named in a note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads GLITCH_RATIO for --help, which must not wait for polars
    import polars as pl

GLITCH_RATIO = 300.0  # typical deviations beyond the middle 98% from which a value is a glitch
LISTED = 3  # glitches named in the note; the rest are counted


def mark_glitches(frame: pl.DataFrame, ratio: float) -> tuple[pl.DataFrame, list[str]]:
    """`frame` (canonical columns, gaps still in place) with its glitches' values set to null, and
    a note naming them; unchanged and no note where there are none or `ratio` is 0 (off)."""
    import polars as pl

    if not ratio or frame.is_empty():
        return frame, []
    value = pl.col("value")
    finite = pl.when(value.is_finite()).then(value)
    by = "series_id"
    centre = finite.median().over(by)
    distance = (finite - centre).abs()
    typical = distance.median().over(by)
    others = pl.when(distance > 0).then(distance).mean().over(by)  # where the median distance is 0
    spread = pl.when(typical > 0).then(typical).otherwise(others)
    low, high = finite.quantile(0.01, "linear").over(by), finite.quantile(0.99, "linear").over(by)
    glitch = (spread > 0) & ((finite > high + ratio * spread) | (finite < low - ratio * spread))
    flags = frame.select(glitch.fill_null(False).alias("glitch"))["glitch"]
    count = int(flags.sum())
    if not count:
        return frame, []
    found = frame.filter(flags).head(LISTED)
    named = "; ".join(
        f"series {s!r} at {t}: {v:g}" for s, t, v in found.select(by, "timestamp", "value").iter_rows()
    )
    more = f"; and {count - LISTED} more" if count > LISTED else ""
    note = (
        f"read {count} value{'s' if count > 1 else ''} as missing: over {ratio:g} times the series' typical "
        f"deviation beyond its usual range, a glitch ({named}{more}); --glitch-ratio 0 keeps them"
    )
    return frame.with_columns(value=pl.when(flags).then(None).otherwise(value)), [note]
