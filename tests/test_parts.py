"""`forecast --shard` and `backtest --shard`: each shard writes one part of a Parquet dataset, and
the parts read (or combine) as one run over every series."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.shards import shard_of
from tests.conftest import hourly_frame
from tests.test_batches import assert_same_forecasts

SCORES = ["model", "naive", "seasonal_naive", "gain_naive", "gain_seasonal_naive"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("parts")
    hourly_frame(series=7, length=240, seed=5).write_parquet(path / "data.parquet")
    sc.save(tiny_model, path / "model.streamcast")
    return path


def run(folder, *args, env=None):
    model = ["-m", str(folder / "model.streamcast")]
    return CliRunner().invoke(main, [args[0], str(folder / "data.parquet"), *model, *args[1:]], env=env)


def whole_forecast(folder) -> pl.DataFrame:
    result = run(folder, "forecast", "-q")
    return pl.read_csv(io.StringIO(result.stdout), try_parse_dates=True)


def test_shards_write_parts_that_read_as_the_whole_forecast(folder, tmp_path):
    out = tmp_path / "forecasts"
    for k in range(2):
        result = run(folder, "forecast", "--shard", f"{k}/2", "-o", f"{out}/", "-q")
        assert result.exit_code == 0, result.stderr
        part = pl.read_parquet(out / f"part-{k}-of-2.parquet")
        assert part.height > 0
        assert {shard_of(sid, 2) for sid in part["series_id"]} == {k}
    # locks and temporaries are hidden: Spark and DuckDB skip `.` files when they read a folder
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["part-0-of-2.parquet", "part-1-of-2.parquet"]
    both = pl.read_parquet(f"{out}/*.parquet").sort("series_id", "step")
    assert_same_forecasts(both, whole_forecast(folder).cast(both.schema))
    assert ds.dataset(out).to_table().num_rows == both.height


def test_an_empty_shard_writes_an_empty_part_of_the_same_schema(folder, tmp_path):
    out = tmp_path / "many"
    for k in range(12):
        assert run(folder, "forecast", "--shard", f"{k}/12", "-o", f"{out}/", "-q").exit_code == 0
    parts = [pl.read_parquet(out / f"part-{k}-of-12.parquet") for k in range(12)]
    assert any(p.height == 0 for p in parts)
    assert all(p.schema == parts[0].schema for p in parts)
    assert pl.read_parquet(f"{out}/*.parquet").height == 7 * 6


def test_under_torchrun_each_rank_forecasts_its_shard(folder, tmp_path):
    out = tmp_path / "ranks"
    result = run(folder, "forecast", "-o", f"{out}/", "-q", env={"RANK": "1", "WORLD_SIZE": "2"})
    assert result.exit_code == 0, result.stderr
    part = pl.read_parquet(out / "part-1-of-2.parquet")
    assert {shard_of(sid, 2) for sid in part["series_id"]} == {1}


def test_under_torchrun_ranks_need_a_folder(folder, tmp_path):
    result = run(folder, "forecast", "-o", str(tmp_path / "f.csv"), env={"RANK": "0", "WORLD_SIZE": "2"})
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: under torchrun each of the 2 ranks writes one part: give -o a folder, e.g. -o out/\n"
    )


def test_a_shard_outside_the_count_is_a_usage_error(folder):
    result = run(folder, "forecast", "--shard", "2/2")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --shard '2/2': expected K/N with N >= 1 and 0 <= K < N")


def test_combined_backtest_parts_score_as_one_run(folder, tmp_path):
    out = tmp_path / "scores"
    for k in range(2):
        result = run(folder, "backtest", "--shard", f"{k}/2", "-o", f"{out}/", "--windows", "3", "-q")
        assert result.exit_code == 0, result.stderr
    combined = CliRunner().invoke(main, ["backtest", "--combine", str(out)])
    assert combined.exit_code == 0, combined.stderr
    one = run(folder, "backtest", "--windows", "3", "--per-series", "-o", "-")
    got = pl.read_csv(io.StringIO(combined.stdout))
    want = pl.read_csv(io.StringIO(one.stdout))
    assert got.drop(SCORES).equals(want.drop(SCORES))
    assert got.filter(pl.col("scope") == "overall")["metric"].to_list() == ["mae", "rmse", "smape", "mase"]
    for column in SCORES:
        np.testing.assert_allclose(got[column].to_numpy(), want[column].to_numpy(), rtol=1e-9, atol=1e-12)


def test_combine_names_a_missing_part(folder, tmp_path):
    out = tmp_path / "scores"
    assert run(folder, "backtest", "--shard", "1/3", "-o", f"{out}/", "-q").exit_code == 0
    result = CliRunner().invoke(main, ["backtest", "--combine", str(out)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: part-0-of-3.parquet is missing from {str(out)!r}: run that shard\n"


def test_a_sharded_backtest_needs_a_saved_model(folder):
    result = CliRunner().invoke(main, ["backtest", str(folder / "data.parquet"), "--shard", "0/2"])
    assert result.exit_code == 2
    assert "--shard scores a saved model: fit once, then pass -m MODEL" in result.stderr


def test_under_torchrun_a_saved_model_is_scored_one_shard_per_rank(folder, tmp_path):
    out = tmp_path / "scores"
    env = {"RANK": "0", "WORLD_SIZE": "2"}
    result = run(folder, "backtest", "-o", f"{out}/", "--windows", "2", "-q", env=env)
    assert result.exit_code == 0, result.stderr
    part = pl.read_parquet(out / "part-0-of-2.parquet")
    assert {shard_of(sid, 2) for sid in part["series_id"].drop_nulls()} == {0}


def test_parts_written_in_batches_or_whole_share_one_schema(folder, tmp_path):
    """A part written a batch at a time (row groups) reads with one written as a single table."""
    out = tmp_path / "mixed"
    assert (
        run(folder, "forecast", "--shard", "1/2", "-o", f"{out}/", "--batch-series", "2", "-q").exit_code == 0
    )
    assert run(folder, "forecast", "--shard", "0/2", "-o", f"{out}/", "-q").exit_code == 0
    assert pq.ParquetFile(out / "part-1-of-2.parquet").num_row_groups == 2
    both = pl.read_parquet(f"{out}/*.parquet").sort("series_id", "step")
    assert ds.dataset(out).to_table().num_rows == both.height == 7 * 6
    assert_same_forecasts(both, whole_forecast(folder).cast(both.schema))
    assert both.schema == pl.read_parquet(out / "part-0-of-2.parquet").schema


def test_a_dataset_folder_is_made_but_a_missing_parent_fails_at_once(folder, tmp_path):
    made = run(folder, "forecast", "--shard", "0/2", "-o", f"{tmp_path / 'new'}/", "-q")
    assert made.exit_code == 0, made.stderr
    assert (tmp_path / "new" / "part-0-of-2.parquet").is_file()
    missing = run(folder, "forecast", "--shard", "0/2", "-o", f"{tmp_path / 'no' / 'such'}/", "-q")
    assert missing.exit_code == 2
    assert "does not exist; create it first" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "no").exists()


def test_backtest_shard_refuses_save_forecasts_instead_of_ignoring_it(folder, tmp_path):
    saved = tmp_path / "forecasts.csv"
    result = run(
        folder, "backtest", "--shard", "0/2", "-o", f"{tmp_path / 'scores'}/", "--save-forecasts", str(saved)
    )
    assert result.exit_code == 2
    assert "--save-forecasts writes one file of every series: run it without --shard" in result.stderr
    assert not saved.exists()
