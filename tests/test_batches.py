"""Reading and forecasting a batch of series at a time: the same forecasts as one pass over all."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.batches import BatchReader, read_batches
from streamcast.cli import main
from streamcast.errors import DataError, UsageError
from streamcast.forecasting import forecast, forecast_batches
from streamcast.output import write_frames
from tests.conftest import hourly_frame


def uneven_frame(series: int = 9) -> pl.DataFrame:
    """Series of different lengths, so that batches end at different times; rows not sorted."""
    frame = hourly_frame(series=series, length=120, seed=3)
    position = pl.int_range(pl.len()).over("series_id")
    keep = position >= pl.col("series_id").str.slice(1).cast(pl.Int64) * 5
    return frame.filter(keep).sort("value")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("batches")
    uneven_frame().write_parquet(folder / "data.parquet", row_group_size=100)
    uneven_frame().write_csv(folder / "data.csv")
    sc.save(tiny_model, folder / "model.streamcast")
    return folder


def one_pass(model, path, **settings) -> pl.DataFrame:
    return forecast(model, sc.read_series(path), **settings)


def assert_same_forecasts(batched: pl.DataFrame, whole: pl.DataFrame) -> None:
    """Same rows, keys and flags; values to float32 rounding (the network's precision): matrix
    routines sum in another order for a handful of rows than for many."""
    floats = [c for c, t in whole.schema.items() if t == pl.Float64]
    assert batched.drop(floats).equals(whole.drop(floats))
    for c in floats:
        np.testing.assert_allclose(batched[c].to_numpy(), whole[c].to_numpy(), rtol=1e-5)


@pytest.mark.parametrize("source", ["data.parquet", "data.csv"])
@pytest.mark.parametrize("batch_series", [2, 3, 4])
def test_forecast_in_tiny_batches_equals_one_pass(data_dir, tiny_model, source, batch_series):
    path = data_dir / source
    settings = {"horizon": 15}  # beyond the trained 6: the roll-forward runs per batch too
    batches = list(read_batches(path, batch_series=batch_series))
    assert [b.frame["series_id"].n_unique() for b in batches][0] == batch_series
    tables = list(forecast_batches(tiny_model, batches, **settings))
    assert len(tables) > 1
    assert_same_forecasts(pl.concat(tables), one_pass(tiny_model, path, **settings))


def test_batches_of_256_series_give_equal_length_series_the_very_same_bits(tmp_path, tiny_model):
    """Batches of a multiple of the 256 series the network runs at once hold the same groups."""
    path = tmp_path / "many.parquet"
    hourly_frame(series=600, length=30).write_parquet(path)
    settings = {"horizon": 9}
    tables = list(forecast_batches(tiny_model, read_batches(path, batch_series=512), **settings))
    assert len(tables) == 2
    assert pl.concat(tables).equals(one_pass(tiny_model, path, **settings))


def test_a_lone_last_series_joins_the_batch_before_it(data_dir):
    sizes = [b.frame["series_id"].n_unique() for b in read_batches(data_dir / "data.parquet", batch_series=4)]
    assert sizes == [4, 5]


def test_batches_with_as_of_and_context_equal_one_pass(data_dir, tiny_model):
    path = data_dir / "data.parquet"
    settings = {"as_of": "2024-01-05T10:00", "context": 40}
    tables = forecast_batches(tiny_model, read_batches(path, batch_series=2), **settings)
    assert_same_forecasts(pl.concat(list(tables)), one_pass(tiny_model, path, **settings))


def test_chosen_series_are_read_alone_and_a_missing_one_is_named(data_dir):
    reader = BatchReader(data_dir / "data.parquet")
    assert reader.share(series=["s7", "s2"]) == ["s2", "s7"]
    (batch,) = reader.read(["s2", "s7"], batch_series=2)
    assert batch.series_ids == ["s2", "s7"]
    with pytest.raises(DataError, match="series 'nope' is not in .*data.parquet; check --series"):
        reader.share(series=["nope"])


def test_a_batch_of_one_series_is_refused(data_dir):
    with pytest.raises(UsageError, match="--batch-series must be at least 2"):
        list(read_batches(data_dir / "data.parquet", batch_series=1))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_tables_written_one_by_one_read_back_as_the_whole(tmp_path, data_dir, tiny_model, suffix):
    path = data_dir / "data.parquet"
    tables = forecast_batches(tiny_model, read_batches(path, batch_series=3))
    out = tmp_path / f"out{suffix}"
    rows = write_frames(tables, str(out))
    whole = tmp_path / f"whole{suffix}"
    write_frames([one_pass(tiny_model, path)], str(whole))
    if suffix == ".parquet":
        assert_same_forecasts(pl.read_parquet(out), pl.read_parquet(whole))
    elif suffix == ".csv":
        assert_same_forecasts(pl.read_csv(out), pl.read_csv(whole))
    else:
        assert_same_forecasts(pl.read_ndjson(out), pl.read_ndjson(whole))
    assert rows == 9 * 6


def test_cli_forecast_with_small_batches_prints_the_same_table(data_dir):
    args = ["forecast", str(data_dir / "data.parquet"), "-m", str(data_dir / "model.streamcast"), "-q"]
    runner = CliRunner()
    whole = runner.invoke(main, args, catch_exceptions=False)
    batched = runner.invoke(main, [*args, "--batch-series", "2"], catch_exceptions=False)
    assert batched.exit_code == 0
    assert_same_forecasts(pl.read_csv(io.StringIO(batched.stdout)), pl.read_csv(io.StringIO(whole.stdout)))
    assert whole.stdout.count("\n") == 1 + 9 * 6  # one header


def test_cli_warns_once_about_new_series_across_batches(data_dir):
    args = ["forecast", str(data_dir / "data.parquet"), "-m", str(data_dir / "model.streamcast")]
    result = CliRunner().invoke(main, [*args, "--batch-series", "2"], catch_exceptions=False)
    # the model was fitted on s0..s2 of another data set: s3..s8 are new
    assert result.stderr.count("warning: 6 series the model never saw (e.g. 's3')") == 1


def stores_sorted_by_id(path, rows_per_store: int = 12_000) -> None:
    """Three stores, the id under a name no list knows, the file sorted by it: its first 10,000
    rows hold one store only."""
    hours = pl.datetime_range(
        pl.datetime(2020, 1, 1),
        pl.datetime(2020, 1, 1) + pl.duration(hours=rows_per_store - 1),
        "1h",
        eager=True,
    )
    pl.concat(
        pl.DataFrame(
            {"store": f"st{i}", "when": hours, "sales": np.arange(rows_per_store) % 24 + 10.0 * (i + 1)}
        )
        for i in range(3)
    ).write_parquet(path)


def test_a_file_sorted_by_an_id_told_from_content_is_still_read_by_id(tmp_path):
    path = tmp_path / "stores.parquet"
    stores_sorted_by_id(path)
    reader = BatchReader(path, target="sales")
    assert reader._scan is not None  # read by id, batch by batch, not whole
    assert reader.ids == ["st0", "st1", "st2"]


def test_a_dataset_shard_finds_an_id_told_from_content(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    stores_sorted_by_id(folder / "part-0.parquet", rows_per_store=500)
    whole = sc.read_series(folder, target="sales")
    shares = [sc.read_series(folder, target="sales", shard=sc.shards.Shard(k, 2)) for k in range(2)]
    assert (
        sorted(s for share in shares for s in share.series_ids) == whole.series_ids == ["st0", "st1", "st2"]
    )


def test_read_batches_takes_the_readers_options(tmp_path):
    path = tmp_path / "zoned.parquet"
    hourly_frame(series=2, length=30).with_columns(
        pl.col("timestamp").dt.replace_time_zone("Europe/Berlin")
    ).write_parquet(path)
    batches = list(read_batches(path, time_zone="UTC", batch_series=2))
    assert [b.frame["timestamp"].dtype.time_zone for b in batches] == ["UTC"]
