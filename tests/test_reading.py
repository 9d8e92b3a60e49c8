"""The reader: every input shape becomes the same canonical frame, and every user error is one line."""

from __future__ import annotations

import gzip
import io
import itertools
import sys
from collections import Counter
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from streamcast.errors import DataError, UsageError
from streamcast.reading import Columns, future_timestamps, infer_freq, read_series, read_table

START = datetime(2024, 1, 1)
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data"


def hours(n: int, start: datetime = START) -> list[datetime]:
    return [start + timedelta(hours=k) for k in range(n)]


def long_frame(ids=("a", "b"), n: int = 6) -> pl.DataFrame:
    """Hourly long table whose value encodes (series, step), so that any misplaced row shows."""
    rows = [(sid, ts, 10.0 * i + k) for i, sid in enumerate(ids) for k, ts in enumerate(hours(n))]
    return pl.DataFrame(rows, schema=["unique_id", "ds", "y"], orient="row")


@contextmanager
def raises(exc_type, *words):
    """pytest.raises that also checks the message is one line naming `words`."""
    with pytest.raises(exc_type) as info:
        yield info
    message = str(info.value)
    assert "\n" not in message, message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"


# Formats


def test_parquet_csv_csvgz_stdin_and_frame_read_to_the_same_canonical_frame(tmp_path, monkeypatch):
    frame = long_frame()
    frame.write_parquet(tmp_path / "d.parquet")
    frame.write_csv(tmp_path / "d.csv")
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress((tmp_path / "d.csv").read_bytes()))
    expected = read_series(frame).frame
    for name in ("d.parquet", "d.csv", "d.csv.gz"):
        assert read_series(tmp_path / name).frame.equals(expected), name
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((tmp_path / "d.csv").read_bytes())))
    from_stdin = read_series("-")
    assert from_stdin.frame.equals(expected)
    assert from_stdin.source == "-"


def test_canonical_frame_has_fixed_columns_types_and_order():
    frame = long_frame().with_columns(temp=pl.lit(3, pl.Int32))
    data = read_series(frame, covariates=["temp"])
    assert data.frame.columns == ["series_id", "timestamp", "value", "temp"]
    assert data.frame.dtypes == [pl.String, pl.Datetime("us"), pl.Float64, pl.Float64]
    assert data.source == "<frame>"
    assert data.series_ids == ["a", "b"]
    assert data.lengths() == {"a": 6, "b": 6}


def test_source_records_the_path_as_given(tmp_path):
    long_frame().write_csv(tmp_path / "d.csv")
    assert read_series(str(tmp_path / "d.csv")).source == str(tmp_path / "d.csv")


def test_read_table_returns_the_raw_columns_untouched(tmp_path):
    long_frame().write_csv(tmp_path / "d.csv")
    assert read_table(tmp_path / "d.csv").columns == ["unique_id", "ds", "y"]


def test_unknown_suffix_is_a_usage_error_listing_the_formats_that_work(tmp_path):
    (tmp_path / "d.xlsx").write_bytes(b"x")
    with raises(UsageError, "d.xlsx", ".parquet", ".csv", ".csv.gz"):
        read_series(tmp_path / "d.xlsx")


def test_missing_file_is_a_data_error_naming_the_path(tmp_path):
    with raises(DataError, "nope.csv", "not found"):
        read_series(tmp_path / "nope.csv")


@pytest.mark.parametrize("content", [b"", b"unique_id,ds,y\n"])
def test_empty_csv_is_a_data_error(tmp_path, content):
    (tmp_path / "d.csv").write_bytes(content)
    with raises(DataError, "d.csv"):
        read_series(tmp_path / "d.csv")


def test_frame_without_rows_is_a_data_error():
    with raises(DataError, "<frame>", "no rows"):
        read_series(long_frame().head(0))


def test_parquet_without_rows_is_a_data_error(tmp_path):
    long_frame().head(0).write_parquet(tmp_path / "d.parquet")
    with raises(DataError, "d.parquet", "no rows"):
        read_series(tmp_path / "d.parquet")


def test_empty_stdin_is_a_data_error(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with raises(DataError, "stdin", "empty"):
        read_series("-")


def test_corrupt_parquet_is_a_data_error_not_a_polars_exception(tmp_path):
    (tmp_path / "d.parquet").write_bytes(b"this is not parquet")
    with raises(DataError, "d.parquet", "parquet"):
        read_series(tmp_path / "d.parquet")


def test_csv_whose_column_turns_to_text_after_many_rows_still_reads(tmp_path):
    text = "ds,y\n" + "".join(f"{START + timedelta(hours=k)},{k}\n" for k in range(12_000))
    (tmp_path / "d.csv").write_text(text + f"{START + timedelta(hours=12_000)},1.5\n")
    assert read_series(tmp_path / "d.csv").frame.height == 12_001


# Layouts and columns


def test_long_format_columns_are_detected_case_insensitively():
    frame = long_frame().rename({"unique_id": "Series", "ds": "TimeStamp", "y": "Value"})
    data = read_series(frame)
    assert data.columns == Columns(id="Series", time="TimeStamp", target="Value")
    assert data.series_ids == ["a", "b"]


def test_long_format_uses_the_only_numeric_column_when_no_target_name_matches():
    data = read_series(long_frame().rename({"y": "load"}))
    assert data.columns.target == "load"


def test_wide_format_makes_one_series_per_numeric_column():
    frame = pl.DataFrame({"date": hours(4), "north": [1, 2, 3, 4], "south": [5.0, 6, 7, 8]})
    data = read_series(frame)
    assert data.series_ids == ["north", "south"]
    assert data.columns == Columns(id=None, time="date", target="")
    assert data.frame.filter(pl.col("series_id") == "south")["value"].to_list() == [5, 6, 7, 8]


def test_wide_format_keeps_covariates_out_of_the_series():
    frame = pl.DataFrame({"ds": hours(3), "a": [1, 2, 3], "b": [4, 5, 6], "temp": [0.5, 1, 2]})
    data = read_series(frame, covariates=["temp"])
    assert data.series_ids == ["a", "b"]
    assert data.frame["temp"].to_list() == [0.5, 1, 2, 0.5, 1, 2]


def test_single_series_is_named_after_its_target_column():
    data = read_series(pl.DataFrame({"timestamp": hours(3), "load": [1, 2, 3]}))
    assert data.series_ids == ["load"]
    assert data.columns == Columns(id=None, time="timestamp", target="load")


def test_target_given_without_id_reads_one_series_even_among_other_numbers():
    frame = pl.DataFrame({"ds": hours(3), "a": [1, 2, 3], "b": [4, 5, 6]})
    assert read_series(frame, target="b").series_ids == ["b"]


def test_empty_target_means_detect_as_a_wide_models_columns_record():
    frame = pl.DataFrame({"ds": hours(3), "a": [1, 2, 3], "b": [4, 5, 6]})
    assert read_series(frame, target="").series_ids == ["a", "b"]


def test_options_override_detection():
    frame = pl.DataFrame(
        {"meter": ["m"] * 3, "when": hours(3), "kwh": [1, 2, 3], "y": [9, 9, 9], "id": ["x"] * 3}
    )
    data = read_series(frame, id_col="meter", time_col="when", target="kwh")
    assert data.columns == Columns(id="meter", time="when", target="kwh")
    assert data.series_ids == ["m"]
    assert data.frame["value"].to_list() == [1, 2, 3]


def test_integer_ids_become_strings():
    frame = long_frame().with_columns(pl.col("unique_id").replace_strict({"a": 1, "b": 2}))
    assert read_series(frame).series_ids == ["1", "2"]


def test_unknown_column_is_a_usage_error_listing_the_columns():
    with raises(UsageError, "'kwh'", "--target", "unique_id, ds, y"):
        read_series(long_frame(), target="kwh")
    with raises(UsageError, "'when'", "--time-col"):
        read_series(long_frame(), time_col="when")


def test_unknown_covariate_is_a_usage_error():
    with raises(UsageError, "'temp'", "--covariate"):
        read_series(long_frame(), covariates=["temp"])


def test_covariate_with_a_reserved_name_is_a_usage_error():
    frame = long_frame().with_columns(value=pl.lit(1.0))
    with raises(UsageError, "'value'", "reserved"):
        read_series(frame, covariates=["value"])


def test_same_column_for_two_parts_is_a_usage_error():
    with raises(UsageError, "'y'", "already used"):
        read_series(long_frame(), target="y", covariates=["y"])


def test_no_numeric_column_is_a_data_error_asking_for_target():
    frame = pl.DataFrame({"ds": hours(2), "name": ["x", "y"]})
    with raises(DataError, "no numeric column", "--target"):
        read_series(frame)


def test_several_numeric_columns_in_long_format_is_a_data_error_listing_them():
    frame = long_frame().rename({"y": "load"}).with_columns(temp=pl.lit(1.0))
    with raises(DataError, "load, temp", "--target"):
        read_series(frame)


def test_text_target_is_a_data_error_naming_a_bad_value():
    frame = long_frame().with_columns(pl.col("y").cast(pl.String).replace("12.0", "twelve"))
    with raises(DataError, "'y'", "not numeric", "twelve"):
        read_series(frame)


def test_text_markers_like_na_in_the_target_count_as_missing():
    frame = pl.DataFrame({"ds": hours(4), "y": ["1", "NA", " ", "4"]})
    assert read_series(frame).frame["value"].to_list() == [1, 2, 3, 4]


def test_rows_without_an_id_are_a_data_error():
    frame = long_frame().with_columns(
        pl.when(pl.col("y") == 3).then(None).otherwise("unique_id").alias("unique_id")
    )
    with raises(DataError, "1 rows", "no id", "unique_id"):
        read_series(frame)


# Timestamps


def test_iso_strings_with_and_without_time_parse_naive():
    for text, expected in (("2024-01-01", "1d"), ("2024-01-01 00:00", "1d"), ("2024-01-01T00:00:00", "1d")):
        frame = pl.DataFrame({"ds": [text, text.replace("01-01", "01-02")], "y": [1, 2]})
        data = read_series(frame)
        assert data.freq == expected
        assert data.frame["timestamp"].to_list() == [datetime(2024, 1, 1), datetime(2024, 1, 2)]


def test_iso_strings_with_offsets_become_utc():
    frame = pl.DataFrame({"ds": ["2024-01-01T01:00:00+01:00", "2024-01-01T03:00:00+02:00"], "y": [1, 2]})
    data = read_series(frame)
    assert data.frame["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert data.frame["timestamp"].to_list() == [
        datetime(2024, 1, 1, 0, tzinfo=timezone.utc),
        datetime(2024, 1, 1, 1, tzinfo=timezone.utc),
    ]


def test_dates_become_datetimes():
    data = read_series(pl.DataFrame({"date": [date(2024, 1, 1), date(2024, 1, 2)], "y": [1, 2]}))
    assert data.frame["timestamp"].dtype == pl.Datetime("us")
    assert data.freq == "1d"


def test_time_zone_aware_datetimes_keep_their_zone():
    ts = pl.datetime_range(START, START + timedelta(hours=3), "1h", time_zone="Europe/Berlin", eager=True)
    data = read_series(pl.DataFrame({"ds": ts, "y": [1, 2, 3, 4]}))
    assert data.frame["timestamp"].dtype == pl.Datetime("us", "Europe/Berlin")
    assert data.frame["timestamp"].equals(ts.dt.cast_time_unit("us"), check_names=False)


def test_daily_data_across_daylight_saving_stays_on_its_calendar_grid():
    ts = pl.datetime_range(
        datetime(2024, 3, 28), datetime(2024, 4, 3), "1d", time_zone="Europe/Berlin", eager=True
    )
    frame = pl.DataFrame({"ds": ts, "y": range(7)}).filter(pl.col("y") != 3)
    data = read_series(frame)
    assert data.freq == "1d"
    assert data.frame["timestamp"].equals(ts.dt.cast_time_unit("us"), check_names=False)
    assert data.frame["value"].to_list() == [0, 1, 2, 3, 4, 5, 6]


def test_epoch_seconds_become_utc_datetimes():
    epoch = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp())
    data = read_series(pl.DataFrame({"timestamp": [epoch, epoch + 3600], "y": [1, 2]}))
    assert data.freq == "1h"
    assert data.frame["timestamp"][0] == datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_yyyymmdd_integers_become_dates():
    data = read_series(pl.DataFrame({"date": [20240130, 20240131, 20240201], "y": [1, 2, 3]}))
    assert data.freq == "1d"
    assert data.frame["timestamp"][-1] == datetime(2024, 2, 1)


def test_year_month_strings_are_monthly():
    data = read_series(pl.DataFrame({"ds": ["2023-11", "2023-12", "2024-01"], "y": [1, 2, 3]}))
    assert data.freq == "1mo"
    assert data.frame["timestamp"][-1] == datetime(2024, 1, 1)


def test_small_integers_in_a_time_column_are_a_step_index():
    data = read_series(pl.DataFrame({"time": [0, 2, 4, 8], "y": [1.0, 2, 3, 5]}))
    assert data.freq == "2i"
    assert data.frame["timestamp"].to_list() == [0, 2, 4, 6, 8]
    assert data.frame["value"].to_list() == [1, 2, 3, 4, 5]


def test_no_time_column_numbers_each_series_from_zero():
    data = read_series(pl.DataFrame({"id": ["a", "b", "a", "b", "a"], "y": [1, 2, 3, 4, 5]}))
    assert data.freq == "1i"
    assert data.columns.time is None
    assert data.frame["timestamp"].dtype == pl.Int64
    assert data.frame.rows() == [("a", 0, 1.0), ("a", 1, 3.0), ("a", 2, 5.0), ("b", 0, 2.0), ("b", 1, 4.0)]


def test_unparseable_timestamp_is_a_data_error_naming_the_bad_value():
    frame = pl.DataFrame({"ds": ["2024-01-01 00:00", "2024-01-01 01:00", "yesterday"], "y": [1, 2, 3]})
    with raises(DataError, "'yesterday'", "'ds'", "ISO 8601"):
        read_series(frame)


def test_timestamps_in_no_known_format_are_a_data_error():
    with raises(DataError, "'soon'", "'ds'"):
        read_series(pl.DataFrame({"ds": ["soon", "later"], "y": [1, 2]}))


def test_mixing_offsets_and_naive_timestamps_is_a_data_error():
    frame = pl.DataFrame({"ds": ["2024-01-01T00:00:00+01:00", "2024-01-01T01:00:00"], "y": [1, 2]})
    with raises(DataError, "2024-01-01T01:00:00"):
        read_series(frame)


def test_empty_timestamps_are_a_data_error():
    frame = pl.DataFrame({"ds": ["2024-01-01", None, "2024-01-03"], "y": [1, 2, 3]})
    with raises(DataError, "'ds'", "1 empty"):
        read_series(frame)


# Frequency


@pytest.mark.parametrize(
    ("step", "freq"),
    [
        (timedelta(minutes=15), "15m"),
        (timedelta(hours=1), "1h"),
        (timedelta(days=1), "1d"),
        (timedelta(weeks=1), "1w"),
        (timedelta(days=28), "4w"),
        (timedelta(seconds=30), "30s"),
    ],
)
def test_fixed_frequencies_are_inferred(step, freq):
    ts = [START + k * step for k in (0, 1, 2, 4, 5)]  # one gap: the mode, not the mean, decides
    data = read_series(pl.DataFrame({"ds": ts, "y": [1.0, 2, 3, 5, 6]}))
    assert data.freq == freq
    assert data.frame["value"].to_list() == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("ts", "freq"),
    [
        ([datetime(2023, m, 1) for m in range(1, 13)], "1mo"),
        ([datetime(2024, 1, 31), datetime(2024, 2, 29), datetime(2024, 3, 31), datetime(2024, 4, 30)], "1mo"),
        ([datetime(2023, m, 1) for m in (1, 4, 7, 10)] + [datetime(2024, 1, 1)], "3mo"),
        ([datetime(y, 1, 1) for y in range(2019, 2025)], "1y"),
    ],
)
def test_calendar_frequencies_are_inferred(ts, freq):
    data = read_series(pl.DataFrame({"ds": ts, "y": range(len(ts))}))
    assert data.freq == freq
    assert data.frame["timestamp"].to_list() == ts


def test_monthly_gap_is_filled_on_the_calendar_grid():
    ts = [datetime(2023, m, 1) for m in (1, 2, 3, 5, 6)]
    data = read_series(pl.DataFrame({"ds": ts, "y": [1.0, 2, 3, 5, 6]}))
    assert data.frame["timestamp"][3] == datetime(2023, 4, 1)
    assert data.frame["value"].to_list() == [1, 2, 3, 4, 5, 6]


def test_infer_freq_names_one_series_step():
    assert infer_freq(hours(5)) == "1h"
    assert infer_freq([datetime(2024, m, 1) for m in range(1, 5)]) == "1mo"
    assert infer_freq([date(2024, 1, d) for d in (1, 2, 3)]) == "1d"
    assert infer_freq([3, 1, 5, 7]) == "2i"


def test_infer_freq_of_a_single_timestamp_is_a_data_error():
    with raises(DataError, "single timestamp"):
        infer_freq([START])


def test_mixed_frequencies_are_a_data_error_naming_a_series():
    frame = pl.concat(
        [
            pl.DataFrame({"unique_id": "hourly", "ds": hours(4), "y": [1.0] * 4}),
            pl.DataFrame({"unique_id": "hourly2", "ds": hours(4), "y": [1.0] * 4}),
            pl.DataFrame(
                {"unique_id": "daily", "ds": [START + timedelta(days=k) for k in range(4)], "y": [1.0] * 4}
            ),
        ]
    )
    with raises(DataError, "mixed frequencies", "'daily'", "1d", "1h"):
        read_series(frame)


def test_timestamps_off_the_grid_are_a_data_error():
    ts = hours(4) + [START + timedelta(hours=4, minutes=30)] + hours(3, START + timedelta(hours=5))
    with raises(DataError, "irregular", "04:30", "1h"):
        read_series(pl.DataFrame({"ds": ts, "y": range(len(ts))}))


def test_single_timestamp_in_every_series_is_a_data_error():
    with raises(DataError, "frequency", "single timestamp"):
        read_series(pl.DataFrame({"unique_id": ["a", "b"], "ds": [START, START], "y": [1, 2]}))


def test_series_with_one_point_take_the_frequency_of_the_others():
    frame = pl.concat([long_frame(("a",)), pl.DataFrame({"unique_id": "b", "ds": [START], "y": [1.0]})])
    data = read_series(frame)
    assert data.freq == "1h"
    assert data.lengths() == {"a": 6, "b": 1}


# Duplicates, sorting, gaps


def test_duplicate_timestamps_keep_the_last_row_and_say_how_many():
    frame = pl.DataFrame({"ds": hours(3) + [START, START], "y": [1.0, 2, 3, 7, 8]})
    data = read_series(frame)
    assert data.frame["value"].to_list() == [8, 2, 3]
    assert any("2 rows repeated a timestamp" in note and "last" in note for note in data.notes)


def test_duplicate_rule_follows_source_order_even_when_rows_are_unsorted():
    frame = pl.DataFrame({"ds": [hours(2)[1], START, hours(2)[1], START], "y": [1.0, 2, 3, 4]})
    assert read_series(frame).frame["value"].to_list() == [4, 3]


def test_unsorted_rows_are_sorted_by_series_then_time():
    frame = long_frame(("b", "a", "c"))
    data = read_series(frame.reverse())
    assert data.series_ids == ["a", "b", "c"]
    assert data.frame.equals(read_series(frame).frame)
    assert data.frame.filter(pl.col("series_id") == "a")["value"].to_list() == [10, 11, 12, 13, 14, 15]


def test_gaps_are_filled_by_linear_interpolation_and_noted():
    frame = pl.DataFrame({"ds": [hours(5)[k] for k in (0, 1, 4)], "y": [1.0, 2, 5]})
    data = read_series(frame)
    assert data.frame["timestamp"].to_list() == hours(5)
    assert data.frame["value"].to_list() == [1, 2, 3, 4, 5]
    assert any("filled 2 missing values in 1 series" in note for note in data.notes)


def test_empty_values_after_the_last_observation_are_dropped_and_noted():
    data = read_series(pl.DataFrame({"ds": hours(5), "y": [1.0, 2, 3, None, None]}))
    assert data.frame["value"].to_list() == [1, 2, 3]
    assert data.filled.height == 0
    assert any(
        note.startswith("dropped 2 empty values before the first or after the last") for note in data.notes
    )


def test_filled_values_are_recorded_by_series_and_time():
    data = read_series(pl.DataFrame({"ds": hours(5), "y": [1.0, None, 3, None, 5]}))
    assert data.filled["timestamp"].to_list() == [hours(5)[1], hours(5)[3]]


def test_null_and_nan_values_are_gaps_too():
    data = read_series(pl.DataFrame({"ds": hours(4), "y": [1.0, None, float("nan"), 4]}))
    assert data.frame["value"].to_list() == [1, 2, 3, 4]


def test_infinite_values_are_gaps_in_numbers_and_in_csv_text(tmp_path):
    data = read_series(pl.DataFrame({"ds": hours(4), "y": [1.0, float("inf"), float("-inf"), 4]}))
    assert data.frame["value"].to_list() == [1, 2, 3, 4]
    path = tmp_path / "inf.csv"
    path.write_text("ds,y\n2024-01-01 00:00,1\n2024-01-01 01:00,inf\n2024-01-01 02:00,3\n")
    assert read_series(path).frame["value"].to_list() == [1, 2, 3]


def test_leading_and_trailing_missing_values_are_trimmed_not_invented():
    data = read_series(pl.DataFrame({"ds": hours(5), "y": [None, 1.0, 2, None, None]}))
    assert data.frame["timestamp"].to_list() == hours(5)[1:3]
    assert data.frame["value"].to_list() == [1, 2]


def test_long_gap_is_filled_but_reported_with_series_start_and_length():
    ts = hours(2) + hours(2, START + timedelta(hours=30))
    data = read_series(pl.DataFrame({"unique_id": "m1", "ds": ts, "y": [1.0, 2, 3, 4]}), max_gap=24)
    assert data.frame.height == 32
    long_notes = [note for note in data.notes if "long gap" in note]
    assert len(long_notes) == 1
    assert "'m1'" in long_notes[0] and "28 steps" in long_notes[0] and "2024-01-01 02:00" in long_notes[0]


def test_gap_of_exactly_max_gap_is_not_reported_as_long():
    ts = hours(2) + hours(2, START + timedelta(hours=5))
    data = read_series(pl.DataFrame({"ds": ts, "y": [1.0, 2, 6, 7]}), max_gap=3)
    assert data.frame["value"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    assert not any("long gap" in note for note in data.notes)


def test_covariates_are_carried_forward_then_back_over_gaps():
    ts = [hours(5)[k] for k in (0, 1, 3, 4)]
    frame = pl.DataFrame({"ds": ts, "y": [1.0, 2, 4, 5], "temp": [None, 7.0, None, 9]})
    data = read_series(frame, covariates=["temp"])
    assert data.frame["temp"].to_list() == [7, 7, 7, 7, 9]


def test_gap_filling_never_leaks_between_series():
    frame = long_frame(("a", "b"), n=4).filter(~((pl.col("unique_id") == "b") & (pl.col("y") == 11)))
    data = read_series(frame)
    assert data.frame.filter(pl.col("series_id") == "b")["value"].to_list() == [10, 11, 12, 13]


def test_series_without_values_is_a_data_error():
    frame = long_frame().with_columns(
        pl.when(pl.col("unique_id") == "b").then(None).otherwise("y").alias("y")
    )
    with raises(DataError, "'b'", "no values"):
        read_series(frame)


def test_covariate_without_values_in_a_series_is_a_data_error():
    frame = long_frame().with_columns(temp=pl.when(pl.col("unique_id") == "a").then(1.0))
    with raises(DataError, "'temp'", "'b'"):
        read_series(frame, covariates=["temp"])


def test_series_shorter_than_min_length_is_a_data_error_naming_it():
    frame = pl.concat([long_frame(("a",), n=10), long_frame(("b",), n=3)])
    with raises(DataError, "'b'", "3 points", "at least 5"):
        read_series(frame, min_length=5)


def test_sample_data_reads_with_its_documented_options():
    data = read_series(SAMPLES / "load_hourly.parquet", target="load", covariates=["temperature"])
    assert data.freq == "1h"
    assert len(data.series_ids) == 20
    assert set(data.lengths().values()) == {90 * 24}
    assert data.frame.null_count().sum_horizontal().item() == 0
    single = read_series(SAMPLES / "load_single.csv")
    assert single.series_ids == ["load"] and single.lengths() == {"load": 60 * 24}


# future_timestamps


def test_future_timestamps_continue_hourly_monthly_and_integer_grids():
    assert future_timestamps(START, "1h", 2) == [datetime(2024, 1, 1, 1), datetime(2024, 1, 1, 2)]
    assert future_timestamps(datetime(2024, 1, 31), "1mo", 2) == [
        datetime(2024, 2, 29),
        datetime(2024, 3, 31),
    ]
    assert future_timestamps(7, "2i", 3) == [9, 11, 13]
    assert future_timestamps(START, "1d", 0) == []


def test_future_timestamps_keep_the_time_zone_and_its_calendar_days():
    berlin = ZoneInfo("Europe/Berlin")
    after = future_timestamps(datetime(2024, 3, 30, tzinfo=berlin), "1d", 2)  # DST starts on the 31st
    assert after == [datetime(2024, 3, 31, tzinfo=berlin), datetime(2024, 4, 1, tzinfo=berlin)]
    assert future_timestamps(datetime(2024, 3, 31, 1, tzinfo=berlin), "1h", 1)[0].hour == 3


def test_future_timestamps_of_month_ends_stay_on_month_ends_and_mid_month_stays_mid_month():
    assert future_timestamps(datetime(2024, 2, 29), "1mo", 2) == [
        datetime(2024, 3, 31),
        datetime(2024, 4, 30),
    ]
    assert future_timestamps(datetime(2023, 4, 30), "1mo", 1) == [datetime(2023, 5, 31)]
    assert future_timestamps(datetime(2024, 1, 15), "1mo", 2) == [
        datetime(2024, 2, 15),
        datetime(2024, 3, 15),
    ]


# Properties

FREQS = st.sampled_from(
    [("15m", timedelta(minutes=15)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1))]
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 60),
    freq=FREQS,
    data=st.data(),
)
def test_random_gaps_leave_a_regular_grid_with_original_values_and_no_nulls(n, freq, data):
    name, step = freq
    full = [START + k * step for k in range(n)]
    kept = sorted(data.draw(st.sets(st.integers(1, n - 2), max_size=n - 2)) | {0, n - 1})
    diffs = Counter(b - a for a, b in itertools.pairwise(kept))
    assume(diffs[1] >= max(diffs.values()))  # otherwise the data itself says the step is longer
    values = data.draw(st.lists(st.floats(-1e6, 1e6), min_size=len(kept), max_size=len(kept)))
    # Arbitrary values can look like glitches (streamcast.glitches): this is about gaps alone.
    out = read_series(pl.DataFrame({"ds": [full[k] for k in kept], "y": values}), glitch_ratio=0).frame
    assert out["timestamp"].to_list() == full
    assert out["value"].null_count() == 0
    assert out["value"].gather(kept).to_list() == values
    assert read_series(pl.DataFrame({"ds": full, "y": out["value"]}), glitch_ratio=0).frame.equals(out)


@settings(max_examples=40, deadline=None)
@given(rows=st.permutations(range(12)))
def test_row_order_of_the_input_does_not_change_the_result(rows):
    frame = long_frame(("a", "b"), n=6).with_row_index("r")
    shuffled = frame[list(rows)].drop("r")
    assert read_series(shuffled).frame.equals(read_series(frame.drop("r")).frame)


@settings(max_examples=60, deadline=None)
@given(
    freq=st.sampled_from(["15m", "1h", "6h", "1d", "1w", "1mo", "3mo"]),
    # Up to the 27th: a grid on the 28th whose last point is February 28 is read as month-end
    # data by design (periods_after), so its next point is May 31, not May 28.
    day=st.integers(1, 27),
    n=st.integers(1, 20),
    k=st.integers(1, 10),
)
def test_future_timestamps_continue_the_grid(freq, day, n, k):
    start = datetime(2023, 5, day, 6)
    end = start + (n + k) * timedelta(days=92)  # past the last point at every frequency here
    grid = pl.datetime_range(start, end, freq, eager=True).head(n + k).to_list()
    assert future_timestamps(grid[n - 1], freq, k) == grid[n : n + k]
    assert infer_freq(grid) == freq


@settings(max_examples=60, deadline=None)
@given(
    start=st.datetimes(datetime(1990, 1, 1), datetime(2050, 1, 1)).map(lambda t: t.replace(microsecond=0)),
    freq=FREQS,
    sep=st.sampled_from([" ", "T"]),
    offset_hours=st.none() | st.integers(-11, 12),
)
def test_iso_strings_parse_back_to_the_instants_they_name(start, freq, sep, offset_hours):
    name, step = freq
    zone = None if offset_hours is None else timezone(timedelta(hours=offset_hours))
    stamps = [(start + k * step).replace(tzinfo=zone) for k in range(4)]
    data = read_series(pl.DataFrame({"ds": [s.isoformat(sep=sep) for s in stamps], "y": [1, 2, 3, 4]}))
    assert data.freq == name
    expected = stamps if zone is None else [s.astimezone(timezone.utc) for s in stamps]
    assert [t.replace(tzinfo=t.tzinfo and timezone.utc) for t in data.frame["timestamp"]] == expected


# Spreadsheet-style CSV and unusual layouts


def test_csv_series_ids_stay_text_so_leading_zeros_never_merge_series(tmp_path):
    rows = ["id,ds,y"] + [f"{sid},2024-01-01 0{h}:00,{h}" for sid in ("007", "7") for h in range(3)]
    (tmp_path / "ids.csv").write_text("\n".join(rows) + "\n")
    data = read_series(tmp_path / "ids.csv")
    assert data.series_ids == ["007", "7"]
    assert data.notes == ()


def test_a_wide_column_with_na_tokens_is_still_a_series(tmp_path):
    (tmp_path / "wide.csv").write_text(
        "ds,s1,s2\n2024-01-01 00:00,1,5\n2024-01-01 01:00,2,NA\n2024-01-01 02:00,3,7\n"
    )
    data = read_series(tmp_path / "wide.csv")
    assert data.series_ids == ["s1", "s2"]
    assert data.frame.filter(pl.col("series_id") == "s2")["value"].to_list() == [5, 6, 7]


@pytest.mark.parametrize("unit", [1, 1_000, 1_000_000, 1_000_000_000])
def test_epoch_times_in_seconds_or_finer_units_are_told_apart_by_magnitude(tmp_path, unit):
    seconds = [1_700_000_000 + 3600 * k for k in range(4)]
    lines = ["time,y"] + [f"{s * unit},{k}" for k, s in enumerate(seconds)]
    (tmp_path / "epoch.csv").write_text("\n".join(lines) + "\n")
    data = read_series(tmp_path / "epoch.csv")
    assert data.freq == "1h"
    assert data.frame["timestamp"][0] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=ZoneInfo("UTC"))


def test_semicolon_csv_with_decimal_commas_is_read(tmp_path):
    (tmp_path / "eu.csv").write_text(
        "ds;y\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2,5\n2024-01-01 02:00;3,25\n"
    )
    assert read_series(tmp_path / "eu.csv").frame["value"].to_list() == [1.5, 2.5, 3.25]


def test_header_names_are_read_without_surrounding_spaces(tmp_path):
    (tmp_path / "spaces.csv").write_text("unique_id, ds, y\na,2024-01-01 00:00,1\na,2024-01-01 01:00,2\n")
    assert read_series(tmp_path / "spaces.csv").columns == Columns("unique_id", "ds", "y")


def test_a_text_column_that_is_not_timestamps_gets_a_note_when_no_time_is_found():
    data = read_series(pl.DataFrame({"moment": ["noon", "dusk"], "y": [1.0, 2.0]}))
    assert data.freq == "1i"
    assert data.notes == (
        "no time column found, so rows are numbered in file order; if 'moment' holds the time, pass --time-col moment",
    )


def test_an_unknown_id_column_is_told_by_the_timestamps_it_tells_apart():
    frame = pl.DataFrame({"store": ["a", "a", "b", "b"], "ds": hours(2) * 2, "y": [1.0, 2, 3, 4]})
    data = read_series(frame)
    assert data.columns == Columns("store", "ds", "y")
    assert data.series_ids == ["a", "b"]
    assert data.notes == ("read 'store' as the series id (2 series); pass --id-col to choose another",)


def test_daily_local_midnights_with_changing_offsets_explain_the_utc_conversion(tmp_path):
    days = [f"2024-03-{d:02d}T00:00:00+0{1 if d < 31 else 2}:00" for d in range(28, 32)]
    (tmp_path / "dst.csv").write_text("ds,y\n" + "".join(f"{d},{k}\n" for k, d in enumerate(days)))
    with raises(DataError, "off its 1d grid", "daylight saving", "write them without the offset"):
        read_series(tmp_path / "dst.csv")


def test_a_last_point_on_february_28_is_read_as_month_end_data():
    assert future_timestamps(datetime(2026, 2, 28, 6), "3mo", 2) == [
        datetime(2026, 5, 31, 6),
        datetime(2026, 8, 31, 6),
    ]
    assert future_timestamps(datetime(2026, 1, 28, 6), "3mo", 1) == [datetime(2026, 4, 28, 6)]
