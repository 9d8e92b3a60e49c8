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
LONGEST = 3  # consecutive values beyond the bound that can be a glitch; a longer run is a change
LISTED = 3  # glitches named in the note; the rest are counted


def recorded_ratio(info: dict) -> float:
    """The `glitch_ratio` a model's training data was read with (its `info`); 0 for models from
    before glitches were read as missing, whose data is read again as it was then, and for a
    value that is not a ratio (a file from elsewhere)."""
    ratio = info.get("data", {}).get("glitch_ratio", 0.0)
    ok = isinstance(ratio, int | float) and not isinstance(ratio, bool) and 0 <= ratio < float("inf")
    return float(ratio) if ok else 0.0


def mark_glitches(frame: pl.DataFrame, ratio: float) -> tuple[pl.DataFrame, list[str]]:
    """`frame` (canonical columns sorted by series and time, gaps still in place) with its
    glitches' values set to null, and a note naming them; unchanged and no note where there are
    none or `ratio` is 0 (off).

    Only short runs are glitches: a run of more than LONGEST values beyond the bound is a new
    level or a season of sales, not a logger's error, and neither is a run that ends a series,
    where a shift cannot be told from a glitch and reading it as missing would move the series'
    end. Statistics are per-series aggregations (the frame is sorted, so run ids index them).
    """
    import numpy as np
    import polars as pl

    if not ratio or frame.is_empty():
        return frame, []
    value = pl.col("value")
    work = frame.select(
        pl.col("series_id").rle_id().alias("run"), pl.when(value.is_finite()).then(value).alias("v")
    )
    level = work.group_by("run", maintain_order=True).agg(
        pl.col("v").median().alias("centre"),
        pl.col("v").quantile(0.01, "linear").alias("low"),
        pl.col("v").quantile(0.99, "linear").alias("high"),
    )
    run = work["run"]
    distance = (work["v"] - level["centre"].gather(run)).abs().alias("d")
    spread = (
        pl.DataFrame({"run": run, "d": distance})
        .group_by("run", maintain_order=True)
        .agg(
            pl.col("d").median().alias("typical"), pl.col("d").filter(pl.col("d") > 0).mean().alias("others")
        )
        .select(pl.when(pl.col("typical") > 0).then("typical").otherwise("others").alias("spread"))["spread"]
        .gather(run)
    )
    beyond = (
        (spread > 0)
        & (
            (work["v"] > level["high"].gather(run) + ratio * spread)
            | (work["v"] < level["low"].gather(run) - ratio * spread)
        )
    ).fill_null(False)
    if not beyond.any():
        return frame, []
    # Runs of consecutive observed values beyond the bound within a series (a missing reading
    # inside a run does not split it): short ones that do not end the series.
    seen = np.flatnonzero(work["v"].is_not_null().to_numpy())
    runs, marked = run.to_numpy()[seen], beyond.to_numpy()[seen]
    change = np.ones(len(seen), dtype=bool)
    change[1:] = (runs[1:] != runs[:-1]) | (marked[1:] != marked[:-1])
    starts = np.flatnonzero(change)
    stretch = np.cumsum(change) - 1  # the run of equal `marked` each observed value is in
    last = np.append(starts[1:], len(seen)) - 1  # each such run's last observed value
    ends_series = np.append(runs[1:] != runs[:-1], True)  # each series' last observed value
    short = np.diff(np.append(starts, len(seen)))[stretch] <= LONGEST
    chosen = np.zeros(work.height, dtype=bool)
    chosen[seen] = marked & short & ~ends_series[last[stretch]]
    flags = pl.Series(chosen)
    count = int(flags.sum())
    if not count:
        return frame, []
    found = frame.filter(flags).head(LISTED)
    named = "; ".join(
        f"series {s!r} at {t}: {v:g}"
        for s, t, v in found.select("series_id", "timestamp", "value").iter_rows()
    )
    more = f"; and {count - LISTED} more" if count > LISTED else ""
    note = (
        f"read {count} value{'s' if count > 1 else ''} as missing: over {ratio:g} times the series' typical "
        f"deviation beyond its usual range, a glitch ({named}{more}); --glitch-ratio 0 keeps them"
    )
    return frame.with_columns(value=pl.when(flags).then(None).otherwise(value)), [note]
