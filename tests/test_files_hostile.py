"""Files under attack or accident: a full disk, a run killed mid-write, a data file rewritten while it
is read, absurd values in the data (issue 13). Each ends in one line and an exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from tests.conftest import TINY, hourly_frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hourly_frame().write_csv(tmp_path / "data.csv")
    sc.save(sc.fit(sc.read_series(tmp_path / "data.csv"), TINY), tmp_path / "model.streamcast")
    return tmp_path


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
from streamcast.cli import main
sys.argv = ["streamcast", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_forecast_onto_a_full_disk_is_one_line_and_keeps_the_old_output(workdir, suffix):
    (workdir / f"out{suffix}").write_bytes(b"old")
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "forecast", "-q", "-o", f"out{suffix}"],
        capture_output=True,
        text=True,
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"Error: cannot write 'out{suffix}': File too large; the previous file is left as it was "
        "(free some space, or choose another place)\n"
    )
    assert (workdir / f"out{suffix}").read_bytes() == b"old"
    assert not list(workdir.glob(".out*.tmp"))


def test_forecast_removes_the_temporary_file_of_a_run_killed_while_writing(workdir):
    stale = workdir / ".out.parquet.k1ll3d9x.tmp"
    stale.write_bytes(b"")
    other = workdir / ".other.parquet.abcdefgh.tmp"  # another output's: not ours to remove
    other.write_bytes(b"")
    result = CliRunner().invoke(main, ["forecast", "-q", "-o", "out.parquet"], catch_exceptions=False)
    assert result.exit_code == 0
    assert not stale.exists() and other.exists()
    assert pl.read_parquet(workdir / "out.parquet").height == 18


def test_read_series_reads_the_file_into_memory_never_a_memory_map(workdir, monkeypatch):
    """polars memory-maps a path: a file rewritten in place meanwhile kills the reader with SIGBUS."""
    hourly_frame().write_parquet(workdir / "data.parquet")
    sources = []
    for name in ("read_csv", "read_parquet"):
        real = getattr(pl, name)

        def spy(source, *args, _real=real, **kwargs):
            sources.append(source)
            return _real(source, *args, **kwargs)

        monkeypatch.setattr(pl, name, spy)
    for path in ("data.csv", "data.parquet"):
        assert sc.read_series(workdir / path).frame.height == 600
    assert sources and not any(isinstance(s, (str, os.PathLike)) for s in sources)


def test_read_series_reads_csv_gz_from_memory(workdir):
    import gzip

    (workdir / "data.csv.gz").write_bytes(gzip.compress((workdir / "data.csv").read_bytes()))
    assert sc.read_series(workdir / "data.csv.gz").frame.height == 600
    (workdir / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(sc.errors.DataError, match="not a valid gzip file"):
        sc.read_series(workdir / "bad.csv.gz")


def test_fit_treats_a_value_of_1e308_as_missing_and_says_so(workdir):
    frame = hourly_frame().with_columns(
        pl.when(pl.int_range(pl.len()) == 50).then(1e308).otherwise(pl.col("value")).alias("value")
    )
    frame.write_csv(workdir / "spike.csv")
    data = sc.read_series(workdir / "spike.csv")
    assert "1 values of 'value' beyond ±1e+15 (e.g. 1e+308) are treated as missing" in data.notes
    assert data.frame["value"].abs().max() < 100
    result = CliRunner().invoke(main, ["fit", "spike.csv", "--epochs", "1", "-o", "m.streamcast"])
    assert result.exit_code == 0
    assert "beyond ±1e+15" in result.stderr
    table = sc.load(workdir / "m.streamcast").forecast(workdir / "spike.csv")
    assert table["forecast"].abs().max() < 1000
