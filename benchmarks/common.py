"""Shared by the benchmark scripts: where the data is, the machine, and one way to report."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

from streamcast.threads import default_threads

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("STREAMCAST_DATA", ROOT.parent / "shared" / "data"))
RESULTS = Path(__file__).resolve().parent / "results"


def synthetic(series: int, length: int) -> pl.DataFrame:
    """Hourly series with a daily cycle, seeded: the same load for every speed benchmark."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    values = np.concatenate(
        [10 + i % 7 + 3 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.5, length) for i in range(series)]
    )
    ids = np.repeat([f"s{i:03d}" for i in range(series)], length)
    steps = pl.int_range(pl.len()).over("series_id")
    return pl.DataFrame({"series_id": ids, "value": values}).with_columns(
        (pl.datetime(2024, 1, 1) + pl.duration(hours=steps)).alias("timestamp")
    )


def require(path: Path) -> Path:
    """Skip the benchmark, with a clear message and exit code 0, when its dataset is absent."""
    if not path.exists():
        print(f"skipped: {path} not found (set STREAMCAST_DATA to the folder holding m4/ and ett/)")
        sys.exit(0)
    return path


def machine() -> str:
    """The machine and the torch threads streamcast computes on (its default unless a row says otherwise)."""
    threads = default_threads()
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {threads} thread{'s' * (threads > 1)}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_child_rss_mb() -> float:
    """Peak resident memory of the largest child process waited for (`fit --jobs`' members)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def report(name: str, rows: list[dict], note: str = "") -> None:
    """Print rows as an aligned table and store them in benchmarks/results/NAME.json."""
    if not rows:
        return
    cols = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print(f"## {name}" + (f" — {note}" if note else ""))
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"machine: {machine()}")
    RESULTS.mkdir(exist_ok=True)
    payload = {"benchmark": name, "machine": machine(), "note": note, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def jobs_option(value: str) -> int | str:
    """`--jobs` as `fit --jobs` takes it (an argparse type): `auto`, or a count of members."""
    return value if value == "auto" else int(value)
