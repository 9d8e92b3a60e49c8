"""Draw docs/watch.png: `stream --watch` on the sample load with an injected spike and level shift.

.venv/bin/python docs/watch_picture.py   # about half a minute on one thread
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.dates

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import streamcast as sc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPIKE, SHIFT = 199, 259  # rows of the last 300 hours: +40 at one hour, +30 from another on


def main() -> None:
    data = sc.read_series(ROOT / "sample_data" / "load_single.csv")
    model = sc.fit(data, sc.FitConfig(epochs=3, ensemble=1, seed=0))
    rows = data.frame.tail(300).to_dicts()
    for i, row in enumerate(rows):
        row["value"] += 40.0 * (i == SPIKE) + 30.0 * (i >= SHIFT)
    config = sc.StreamConfig(watch=sc.WatchConfig(z=4.0))
    seen = [
        f
        for batch in sc.stream(model, [sc.Observations.from_records(rows, model)], config=config)
        for f in batch
    ]

    times = [f.timestamp for f in seen]
    expected = [None] + [f.forecast[0] for f in seen[:-1]]  # what each hour was forecast to be
    flagged = [(f.timestamp, r["value"]) for f, r in zip(seen, rows, strict=True) if f.anomaly]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, height_ratios=(2, 1))
    top.plot(
        times, [r["value"] for r in rows], lw=1, color="0.2", label="observed (spike and shift injected)"
    )
    top.plot(times, expected, lw=1, color="tab:blue", alpha=0.8, label="one-step forecast")
    top.scatter(*zip(*flagged, strict=True), color="tab:red", zorder=3, s=22, label="anomaly: true")
    top.set_ylabel("load")
    top.legend(loc="upper left", fontsize=8, frameon=False)
    bottom.plot(times, [f.score for f in seen], lw=1, color="tab:purple")
    for z in (-4, 4):
        bottom.axhline(z, color="tab:red", lw=0.8, ls="--")
    bottom.set_ylabel("score (z)")
    bottom.set_ylim(-12, 12)
    bottom.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%b %d"))
    fig.suptitle("streamcast stream --watch: each hour against the forecast made for it", fontsize=10)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "watch.png", dpi=80)


if __name__ == "__main__":
    main()
