"""Run every benchmark (benchmarks/bench_*.py), then print one table of every stored result.

    python benchmarks/run_all.py             # all of them (make bench)
    python benchmarks/run_all.py --quick     # smaller sizes, where a script supports it
    python benchmarks/run_all.py --only m4   # bench_m4.py alone (repeatable)

Each script runs in its own process, so that one's memory, threads and crashes cannot touch the
next; a failure or a skip (its dataset absent) is reported and the run goes on. Every script writes
benchmarks/results/NAME.json through common.report; the table is read back from those files, and a
result that this run did not refresh is marked as older. Exits 1 if any script failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run bench_NAME.py only (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (STREAMCAST_BENCH_QUICK=1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a script is stopped")
    args = parser.parse_args()

    started = time.time()
    status = {script.name: run(script, args.quick, args.timeout) for script in scripts(args.only)}
    results = sorted(RESULTS.glob("*.json"))
    fresh = {p for p in results if p.stat().st_mtime >= started}
    print_table([p for p in results if p in fresh or not args.only], fresh)
    unfinished = [f"{name} ({how})" for name, how in status.items() if how != "ok"]
    if unfinished:
        print(f"not run to the end: {', '.join(unfinished)}")
    return 1 if any(how.startswith(("failed", "stopped")) for how in status.values()) else 0


def scripts(only: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"))
    if not only:
        return found
    wanted = {name.removeprefix("bench_").removesuffix(".py") for name in only}
    unknown = wanted - {p.stem.removeprefix("bench_") for p in found}
    if unknown:
        names = ", ".join(p.stem.removeprefix("bench_") for p in found)
        sys.exit(f"no benchmark named {sorted(unknown)[0]!r}; there are: {names}")
    return [p for p in found if p.stem.removeprefix("bench_") in wanted]


def run(script: Path, quick: bool, timeout: float) -> str:
    """Run one script and say how it went on stderr: "ok", "skipped", "failed, exit N" or "stopped"."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    if quick:
        env["STREAMCAST_BENCH_QUICK"] = "1"
    print(f"{script.name} ...", end=" ", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        print(f"stopped after {timeout:.0f} s (--timeout)", file=sys.stderr)
        return "stopped by --timeout"
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(f"failed (exit {done.returncode}, {seconds:.0f} s):", file=sys.stderr)
        for line in (done.stderr or done.stdout).splitlines()[-15:]:
            print(f"    {line}", file=sys.stderr)
        return f"failed, exit {done.returncode}"
    skipped = [line for line in done.stdout.splitlines() if line.startswith("skipped")]
    print(skipped[0] if skipped else f"ok ({seconds:.0f} s)", file=sys.stderr)
    return "skipped" if skipped else "ok"


def rows_of(payload: dict) -> list[tuple[str, str, str, str]]:
    """(row, metric, value, published) lines; a result row names itself by its first field, and its
    published reference goes beside the figure it names ("published (MSE/MAE)" beside "test MSE")."""
    lines = []
    for row in payload["rows"]:
        items = list(row.items())
        key, first = items[0]
        label = first if isinstance(first, str) else f"{key}={_value(first)}"
        figures = [(k, v) for k, v in items[1:] if v is not None and not k.startswith("published")]
        published = {k: str(v) for k, v in items if k.startswith("published")}
        beside = {}
        for k, reference in published.items():
            names = k.partition("(")[2].rstrip(")").split("/")
            match = [m for m, _ in figures if any(n.strip() and n.strip() in m for n in names)]
            beside.setdefault(match[0] if match else figures[0][0], []).append(reference)
        for i, (metric, value) in enumerate(figures):
            lines.append((label if i == 0 else "", metric, _value(value), "; ".join(beside.get(metric, []))))
    return lines


def _value(x) -> str:
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def print_table(paths: list[Path], fresh: set[Path]) -> None:
    header = ("benchmark", "row", "metric", "value", "published")
    table, machines = [], {}
    for path in paths:
        payload = json.loads(path.read_text())
        name = payload["benchmark"] + ("" if path in fresh else " *")
        machines.setdefault(payload.get("machine", "?"), []).append(payload["benchmark"])
        for i, line in enumerate(rows_of(payload)):
            table.append((name if i == 0 else "", *line))
    if not table:
        print("no results in benchmarks/results/")
        return
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if len(fresh) < len(paths):
        print("* not refreshed by this run (skipped, failed or not chosen): an earlier result")
    for machine, names in machines.items():
        print(f"machine: {machine} ({', '.join(names)})")


if __name__ == "__main__":
    sys.exit(main())
