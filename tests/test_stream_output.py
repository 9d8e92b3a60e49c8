"""`stream`'s text: a few lines are written row by row in Python, many in polars columns; a reader
must not be able to tell which (the same bytes either way)."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcast.stream.config import StreamConfig
from streamcast.stream.engine import stream
from streamcast.stream.input import parser_for
from streamcast.stream.output import _Columns, _Rows, formatter
from streamcast.stream.state import StreamState
from streamcast.stream.watch import WatchConfig
from tests.conftest import hourly_frame

output = importlib.import_module(
    "streamcast.stream.output"
)  # the module (the package exports a function `stream`)

# Around where polars switches to exponents (1e-5 and 1e12), and float32's extremes.
EDGES = [0.0, -0.0, 1.0, -1.5, 100.0, 0.1, 1e-5, -1e-5, 123456.79, 1e7, 16777217.0, 1e-7, 1e13]
EDGES += [float(np.nextafter(np.float32(1e12), np.float32(0))), 3.4028235e38, 2.5e-5, 1e-45]


def texts(kit, values: list[float]) -> list[str]:
    return list(kit.numbers(np.array([values], dtype=np.float32), "null"))


def test_row_by_row_numbers_are_polars_own_text_at_the_edges_of_its_plain_range():
    assert texts(_Rows, EDGES) == texts(_Columns, EDGES)
    assert texts(_Rows, [float("nan"), 1.0, float("inf"), float("-inf")]) == ["null,1.0,null,null"]
    assert texts(_Columns, [float("nan"), 1.0, float("inf"), float("-inf")]) == ["null,1.0,null,null"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=30))
def test_row_by_row_numbers_are_polars_own_text(values):
    assert texts(_Rows, values) == texts(_Columns, values)


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
@pytest.mark.parametrize("watch", [None, WatchConfig()])
def test_a_batch_written_row_by_row_is_the_bytes_polars_writes_for_it(
    tiny_model, output_format, watch, monkeypatch
):
    rows = hourly_frame(length=40).sort("timestamp", "series_id").iter_rows()
    # Values over six orders of magnitude, and one a hundred billion times the rest.
    scale = [1e-3, 1.0, 1e3]
    lines = [
        f"{sid},{ts:%Y-%m-%d %H:%M},{value * scale[i % 3] * (1e11 if i == 50 else 1):.6g}"
        for i, (sid, ts, value) in enumerate(rows)
    ]
    parser = parser_for(tiny_model)
    batches = [parser.parse(lines[i : i + 4], i + 1) for i in range(0, len(lines), 4)]
    config = StreamConfig(watch=watch)
    written = list(stream(tiny_model, batches, StreamState(tiny_model), config))
    assert sum(len(b) for b in written) >= 100  # the outlier may be held back as a jump

    def text(small: int) -> str:
        monkeypatch.setattr(output, "SMALL_BATCH", small)
        write = formatter(output_format, tiny_model.horizon, tiny_model.quantiles, watch is not None)
        return "".join(write.format(b) for b in written)

    by_rows, by_columns = text(output.SMALL_BATCH), text(-1)
    assert by_rows == by_columns


@pytest.mark.parametrize("output_format", ["jsonl", "csv"])
def test_many_lines_with_ids_beyond_ascii_are_written_as_the_same_utf8_as_a_few(
    tiny_model, output_format, monkeypatch
):
    """A big batch's text is the bytes of polars' column, cut at its rows' offsets: ids of several
    bytes a character must come out whole, as a few lines' Python text encodes them."""
    names = {"s0": "東京-é", "s1": 'quote"d,id'}
    lines = [
        json.dumps({"series_id": names.get(sid, sid), "timestamp": f"{ts:%Y-%m-%dT%H:%M}", "value": v})
        for sid, ts, v in hourly_frame(length=30).sort("timestamp", "series_id").iter_rows()
    ]
    parser = parser_for(tiny_model)
    (batch,) = stream(tiny_model, [parser.parse(lines, 1)], StreamState(tiny_model))
    assert len(batch) > output.SMALL_BATCH and set(names.values()) <= set(batch.series_ids)

    def text(small: int) -> bytes:
        monkeypatch.setattr(output, "SMALL_BATCH", small)
        return bytes(formatter(output_format, tiny_model.horizon, tiny_model.quantiles).render(batch))

    by_columns, by_rows = text(-1), text(len(batch))
    assert by_columns == by_rows and by_columns.count(b"\n") == len(batch)
    assert "東京-é".encode() in by_columns


def test_times_and_calendar_rows_made_ahead_are_those_made_when_their_time_comes(tiny_model, monkeypatch):
    lines = [
        f"{sid},{ts:%Y-%m-%d %H:%M},{value:.4f}"
        for sid, ts, value in hourly_frame(length=40).sort("timestamp", "series_id").iter_rows()
    ]
    features = importlib.import_module("streamcast.features")

    def one_at_a_time(ahead: int) -> str:
        monkeypatch.setattr(output, "TIMES_AHEAD", ahead)
        monkeypatch.setattr(features, "TIMES_AHEAD", ahead)
        features._RECENT_CALENDAR.clear()
        parser = parser_for(tiny_model)
        batches = [parser.parse([line], i + 1) for i, line in enumerate(lines)]
        write = formatter("jsonl", tiny_model.horizon, tiny_model.quantiles)
        return "".join(write.format(b) for b in stream(tiny_model, batches, StreamState(tiny_model)))

    made_ahead = one_at_a_time(24)
    assert made_ahead.count("\n") == 120 and made_ahead == one_at_a_time(0)
