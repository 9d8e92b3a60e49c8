"""Column detection on layouts as users have them: told from types and content, never a silent guess."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from streamcast.cli import main
from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES
from streamcast.errors import DataError
from streamcast.reading import Columns, read_series

START = datetime(2024, 1, 1)
FAST = ["--hidden", "4", "--epochs", "1", "--horizon", "4", "--bptt", "8", "--ensemble", "1", "-q"]


def panel(id_name, time_name, target, *, ids=("a", "b", "c", "d"), n=48, time_major=False, times=None):
    """A long table of len(ids) series with noisy values, sorted by series or by time."""
    rng = np.random.default_rng(0)
    times = times or [START + timedelta(hours=k) for k in range(n)]
    rows = [(sid, t, float(rng.normal(100, 30))) for sid in ids for t in times]
    frame = pl.DataFrame(rows, schema=[id_name, time_name, target], orient="row")
    return frame.sort(time_name, maintain_order=True) if time_major else frame


def iso(frame: pl.DataFrame, col: str) -> pl.DataFrame:
    return frame.with_columns(pl.col(col).dt.strftime("%Y-%m-%dT%H:%M:%S"))


LAYOUTS = {
    "issue: store,when,sales as ISO text": iso(panel("store", "when", "sales"), "when"),
    "ts zoned Europe/Berlin": panel("meter", "ts", "load").with_columns(
        pl.col("ts").dt.replace_time_zone("Europe/Berlin")
    ),
    "event_time, integer sensor ids, time-major": panel(
        "sensor", "event_time", "reading", ids=(101, 102, 103), time_major=True
    ),
    "German: Filiale, Datum (dates), Umsatz": panel(
        "Filiale",
        "Datum",
        "Umsatz",
        times=[date(2024, 1, 1) + timedelta(days=k) for k in range(40)],
    ),
    "Spanish: tienda, fecha, ventas": iso(panel("tienda", "fecha", "ventas"), "fecha"),
    "French: magasin, horodatage, ventes": panel("magasin", "horodatage", "ventes"),
    "upper case: STORE_ID (integers), EVENT_TIME, QTY": panel("STORE_ID", "EVENT_TIME", "QTY", ids=(7, 8, 9)),
    "mixed case TS, Meter": iso(panel("Meter", "TS", "kWh"), "TS"),
    "unknown time name with a datetime type": panel("site", "observed_at", "flow"),
    "unknown time name as ISO text with offsets": panel("site", "gemessen_um", "flow").with_columns(
        pl.col("gemessen_um").dt.strftime("%Y-%m-%dT%H:%M:%S+01:00")
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
def test_real_world_layouts_read_their_id_time_and_target(layout):
    frame = LAYOUTS[layout]
    id_name, time_name, target = frame.columns
    data = read_series(frame)
    assert data.columns == Columns(id_name, time_name, target)
    n_ids = frame[id_name].n_unique()
    assert len(data.series_ids) == n_ids
    assert data.frame.height == frame.height
    assert data.freq in ("1h", "1d")
    assert any(f"read {id_name!r} as the series id ({n_ids} series)" in note for note in data.notes)


def test_zoned_parquet_time_column_keeps_its_zone(tmp_path):
    LAYOUTS["ts zoned Europe/Berlin"].write_parquet(tmp_path / "z.parquet")
    data = read_series(tmp_path / "z.parquet")
    assert data.columns.time == "ts"
    assert data.frame["timestamp"].dtype == pl.Datetime("us", "Europe/Berlin")
    assert data.freq == "1h"


def test_a_single_series_under_an_unknown_time_name_is_read_by_content_and_says_so():
    frame = pl.DataFrame({"Zeitraum": [START + timedelta(hours=k) for k in range(5)], "kW": range(5)})
    data = read_series(frame)
    assert data.columns == Columns(None, "Zeitraum", "kW")
    assert data.freq == "1h"
    assert data.notes == (
        "read 'Zeitraum' as the time (it holds timestamps); pass --time-col to choose another",
    )


def test_two_timestamp_columns_stop_reading_and_name_both():
    times = [f"2024-01-0{d}" for d in range(1, 5)]
    frame = pl.DataFrame({"start": times, "end": times[1:] + ["2024-01-05"], "y": [1.0, 2, 3, 4]})
    with pytest.raises(DataError) as info:
        read_series(frame)
    assert str(info.value) == (
        "<frame>: cannot tell which column is the time ('start' and 'end' could be); "
        "pass --time-col COL, e.g. --time-col start"
    )
    assert read_series(frame, time_col="end").columns.time == "end"


def test_a_named_step_column_beside_a_timestamp_column_stops_reading():
    frame = pl.DataFrame(
        {"time": [0, 1, 2], "when": ["2024-01-01", "2024-01-02", "2024-01-03"], "y": [1, 2, 3]}
    )
    with pytest.raises(DataError, match="'time' and 'when' could be.*--time-col"):
        read_series(frame)


def test_two_columns_that_could_each_name_the_series_stop_reading_and_name_both():
    frame = panel("store", "when", "sales").with_columns(
        pl.col("store")
        .replace_strict({"a": "Ann St", "b": "Bay Rd", "c": "Cole Av", "d": "Dee Sq"})
        .alias("name")
    )
    with pytest.raises(DataError) as info:
        read_series(frame)
    assert str(info.value) == (
        "<frame>: cannot tell which column names the series ('store' and 'name' could); "
        "pass --id-col COL, e.g. --id-col store"
    )
    assert read_series(frame, id_col="name").series_ids == ["Ann St", "Bay Rd", "Cole Av", "Dee Sq"]


def test_repeated_timestamps_that_no_column_tells_apart_stop_reading():
    # Each store has a corrected row, so no column makes (column, time) unique, yet most rows repeat.
    frame = panel("store", "when", "sales")
    frame = pl.concat([frame, frame.filter(pl.col("when") == START)])
    with pytest.raises(DataError, match=r"'when' repeat \(148 of 196 rows\).*--id-col store"):
        read_series(frame)
    data = read_series(frame, id_col="store")
    assert data.series_ids == ["a", "b", "c", "d"]


def test_a_few_corrections_in_one_series_are_still_the_last_row_wins():
    frame = pl.DataFrame(
        {"ds": [START, START, START + timedelta(hours=1)], "source": ["x", "y", "x"], "y": [1.0, 2, 3]}
    )
    data = read_series(frame)
    assert data.columns.id is None
    assert data.frame["value"].to_list() == [2, 3]


def test_a_measured_column_that_differs_at_each_timestamp_is_not_taken_for_the_id():
    frame = panel("store", "when", "sales", ids=(1, 2, 3, 4)).with_columns(
        units=(pl.col("sales") * 10).round().cast(pl.Int64)
    )
    assert read_series(frame, target="sales", covariates=["units"]).columns.id == "store"


def test_known_names_win_without_a_note():
    frame = panel("unique_id", "ds", "y")
    data = read_series(frame)
    assert data.columns == Columns("unique_id", "ds", "y")
    assert data.notes == ()


def test_fit_reads_the_issue_file_as_four_stores(tmp_path):
    path = tmp_path / "sales.csv"
    iso(panel("store", "when", "sales"), "when").write_csv(path)
    out = tmp_path / "m.streamcast"
    result = CliRunner().invoke(main, ["fit", str(path), *FAST[:-1], "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "note: read 'store' as the series id (4 series)" in result.stderr
    forecast = CliRunner().invoke(main, ["forecast", "-m", str(out), "-q", "--keep-names"])
    assert forecast.exit_code == 0, forecast.stderr
    rows = pl.read_csv(forecast.stdout.encode())
    assert rows.columns[:3] == ["store", "origin", "when"]
    assert rows["store"].unique().sort().to_list() == ["a", "b", "c", "d"]


def test_fit_stops_with_one_line_naming_the_candidates_and_the_option(tmp_path):
    path = tmp_path / "two.csv"
    frame = panel("store", "when", "sales").with_columns(code=pl.col("store").str.to_uppercase())
    iso(frame, "when").write_csv(path)
    result = CliRunner().invoke(main, ["fit", str(path), *FAST, "-o", str(tmp_path / "m.streamcast")])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {path}: cannot tell which column names the series ('store' and 'code' could); "
        "pass --id-col COL, e.g. --id-col store\n"
    )
    assert not (tmp_path / "m.streamcast").exists()


def test_help_lists_the_names_the_reader_detects():
    text = CliRunner().invoke(main, ["fit", "--help"], terminal_width=400).stdout
    flat = " ".join(text.split())
    for names in (ID_NAMES, TIME_NAMES, TARGET_NAMES):
        assert ", ".join(names[:-1]) + " or " + names[-1] in flat


def test_zero_padded_codes_in_a_csv_stay_text_under_any_column_name(tmp_path):
    frame = iso(panel("store", "when", "sales", ids=("007", "008", "010")), "when")
    frame.write_csv(tmp_path / "s.csv")
    data = read_series(tmp_path / "s.csv")
    assert data.columns.id == "store"
    assert data.series_ids == ["007", "008", "010"]
