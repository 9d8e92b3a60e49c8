"""`fit --fallback-to`: which naive a badly served series falls back to, on short and coarse data.

ETTh1's seven columns as daily and as weekly means (726 days, 105 weeks; data from
../shared/data/ett, skipped when absent), scored by `backtest` fitted without the scored windows
(the last 8 fortnights of days, the last 4 quarters of weeks: 53 weeks left to fit on, less than
a season and a horizon of the weekly season, 52). `seasonal`: seasonal naive is the only
yardstick and fallback; `best` (the default): per series, seasonal naive or the last value,
whichever did better on the fit's validation part. MAE and MASE of the model, with both naive
forecasts beside it; one seed, defaults otherwise, 1 thread.
"""

from __future__ import annotations

from dataclasses import replace

import polars as pl
from common import SHARED_DATA, machine, report, require

import streamcast as sc
from streamcast.backtest import fit_and_backtest

COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
CASES = (("daily", "1d", 14, 8), ("weekly", "1w", 13, 4))  # name, period, horizon, windows


def aggregated(every: str) -> sc.SeriesFrame:
    frame = pl.read_csv(require(SHARED_DATA / "ett" / "ETTh1.csv"), try_parse_dates=True)
    means = frame.group_by_dynamic("date", every=every).agg(pl.col(c).mean() for c in COLUMNS)
    long = means.unpivot(index="date", on=COLUMNS, variable_name="series_id", value_name="value")
    return sc.read_series(long, id_col="series_id", time_col="date", target="value")


def main() -> None:
    rows = []
    for name, every, horizon, windows in CASES:
        data = aggregated(every)
        for to in ("seasonal", "best"):
            config = replace(sc.FitConfig(horizon=horizon), fallback_to=to)
            model, result = fit_and_backtest(data, config, windows=windows, threads=1)
            chosen = model.info["naive_fallback"]
            rows.append(
                {
                    "data": f"ETTh1 {name}",
                    "--fallback-to": to,
                    "naive / blended (last value)": f"{chosen['series']} / {chosen['blended']} "
                    f"({chosen.get('last_value', 0)})",
                    "MAE": result.score("mae", "model"),
                    "MASE": result.score("mase", "model"),
                    "naive MAE": result.score("mae", "naive"),
                    "seasonal naive MAE": result.score("mae", "seasonal_naive"),
                }
            )
    report("fallback_to", rows, note=f"ETTh1 means, 7 series, seed 0; {machine()}")


if __name__ == "__main__":
    main()
