"""Time zones: the zone the data says is kept, recorded in the model, and serving data in another
zone is brought into the model's with a warning, never a silent shift of the calendar features."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import streamcast as sc
from streamcast.cli import main
from streamcast.errors import DataError, StreamcastWarning, UsageError
from streamcast.reading import read_series

FAST = ["--hidden", "4", "--epochs", "1", "--bptt", "8", "--ensemble", "1", "--horizon", "4", "-q"]
BERLIN = "Europe/Berlin"


def berlin_frame() -> pl.DataFrame:
    """Hourly load across the spring clock change, as a zoned column."""
    ts = pl.datetime_range(datetime(2024, 3, 27), datetime(2024, 4, 4), "1h", time_zone=BERLIN, eager=True)
    values = 50 + 10 * np.sin(np.arange(ts.len()) * 2 * np.pi / 24)
    return pl.DataFrame({"ts": ts, "load": values})


def as_offset_csv(frame: pl.DataFrame, path) -> None:
    frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%:z")).write_csv(path)


def run(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_offsets_are_read_in_utc_with_a_note_naming_the_option():
    frame = berlin_frame().with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%:z"))
    data = read_series(frame)
    assert data.frame["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert any("carry UTC offsets (+01:00, +02:00)" in n and "--time-zone" in n for n in data.notes)


def test_the_same_data_as_zoned_parquet_and_offset_csv_reads_the_same_in_the_zone(tmp_path):
    berlin_frame().write_parquet(tmp_path / "b.parquet")
    as_offset_csv(berlin_frame(), tmp_path / "b.csv")
    parquet = read_series(tmp_path / "b.parquet")
    csv = read_series(tmp_path / "b.csv", time_zone=BERLIN)
    assert parquet.frame["timestamp"].dtype == pl.Datetime("us", BERLIN)
    assert csv.frame.equals(parquet.frame)
    assert csv.source_zone == "UTC" and parquet.source_zone == BERLIN


def test_naive_times_are_read_as_local_times_of_the_zone():
    frame = pl.DataFrame({"ts": [datetime(2024, 1, 1, h) for h in range(3)], "y": [1.0, 2, 3]})
    data = read_series(frame, time_zone=BERLIN)
    assert data.frame["timestamp"][0] == datetime(2024, 1, 1, tzinfo=data.frame["timestamp"][0].tzinfo)
    assert str(data.frame["timestamp"][0].tzinfo) == BERLIN


def test_a_naive_time_the_clock_change_skips_is_a_data_error():
    frame = pl.DataFrame({"ts": [datetime(2024, 3, 31, h) for h in (1, 2, 3)], "y": [1.0, 2, 3]})
    with pytest.raises(DataError, match="does not exist or is ambiguous in Europe/Berlin"):
        read_series(frame, time_zone=BERLIN)


def test_an_unknown_zone_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown time zone 'Mars/Olympus'"):
        read_series(berlin_frame(), time_zone="Mars/Olympus")


def test_daily_local_midnights_with_offsets_sit_on_the_daily_grid_in_their_zone(tmp_path):
    days = ["2024-03-30T00:00:00+01:00", "2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00"]
    days.append("2024-04-02T00:00:00+02:00")
    (tmp_path / "dst.csv").write_text("ds,y\n" + "".join(f"{d},{k}\n" for k, d in enumerate(days)))
    data = read_series(tmp_path / "dst.csv", time_zone=BERLIN)
    assert data.freq == "1d"
    assert data.frame["value"].to_list() == [0, 1, 2, 3]


def test_the_model_records_its_zone_and_serving_another_zone_warns_and_converts(tmp_path):
    berlin_frame().write_parquet(tmp_path / "b.parquet")
    as_offset_csv(berlin_frame(), tmp_path / "b.csv")
    model = tmp_path / "m.streamcast"
    assert run(["fit", str(tmp_path / "b.parquet"), *FAST, "-o", str(model)]).exit_code == 0
    assert sc.load(model).time_zone == BERLIN
    from_parquet = run(["forecast", "-m", str(model)])
    from_csv = run(["forecast", str(tmp_path / "b.csv"), "-m", str(model)])
    assert from_csv.exit_code == 0, from_csv.stderr
    assert from_csv.stdout == from_parquet.stdout
    assert "+02:00" in from_csv.stdout.splitlines()[1]  # local Berlin summer time, not UTC
    assert (
        f"warning: {tmp_path / 'b.csv'}: timestamps are in UTC but the model was trained in Europe/Berlin: "
        "converted to Europe/Berlin, the same instants, so that calendar features match training"
    ) in from_csv.stderr
    assert "warning" not in from_parquet.stderr


def test_python_forecast_warns_when_served_another_zone(tmp_path):
    model = sc.fit(read_series(berlin_frame()), sc.FitConfig(hidden_size=4, epochs=1, horizon=4, ensemble=1))
    utc = berlin_frame().with_columns(pl.col("ts").dt.convert_time_zone("UTC"))
    with pytest.warns(StreamcastWarning, match="in UTC but the model was trained in Europe/Berlin"):
        table = sc.forecast(model, read_series(utc))
    assert table["timestamp"].dtype == pl.Datetime("us", BERLIN)


def test_a_naive_model_served_zoned_data_warns(tmp_path):
    naive = berlin_frame().with_columns(pl.col("ts").dt.replace_time_zone(None).dt.offset_by("0h"))
    naive = naive.unique("ts", keep="last").sort("ts")
    naive.write_parquet(tmp_path / "n.parquet")
    berlin_frame().write_parquet(tmp_path / "b.parquet")
    model = tmp_path / "m.streamcast"
    assert run(["fit", str(tmp_path / "n.parquet"), *FAST, "-o", str(model)]).exit_code == 0
    result = run(["forecast", str(tmp_path / "b.parquet"), "-m", str(model)])
    assert result.exit_code == 0, result.stderr
    assert "timestamps are in Europe/Berlin but the model was trained in no time zone" in result.stderr


def test_info_shows_the_zone_and_stream_warms_up_in_the_models_zone_with_a_warning(tmp_path):
    berlin_frame().write_parquet(tmp_path / "b.parquet")
    as_offset_csv(berlin_frame(), tmp_path / "b.csv")
    model = tmp_path / "m.streamcast"
    assert run(["fit", str(tmp_path / "b.parquet"), *FAST, "-o", str(model)]).exit_code == 0
    assert "1h in Europe/Berlin" in run(["info", str(model)]).stdout
    result = CliRunner().invoke(
        main, ["stream", "-m", str(model), "--warmup", str(tmp_path / "b.csv"), "-q"], input=""
    )
    assert result.exit_code == 0, result.stderr
    assert "timestamps are in UTC but the model was trained in Europe/Berlin" in result.stderr
