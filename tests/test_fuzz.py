"""Fuzzing as a habit: arbitrary bytes, JSON and CSV lines to the stream, arbitrary headers and bit
flips to the model and state loaders. Whatever comes in, the answer is lines and a documented exit
code, never a traceback.

`make test` runs a few examples of each; `make fuzz` runs many (STREAMCAST_FUZZ_EXAMPLES) and prints
how many inputs each test tried.
"""

from __future__ import annotations

import json
import math
import os
import struct

import pytest
import safetensors.torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamcast as sc
from streamcast import safefile
from streamcast.cli import main
from streamcast.errors import ModelFileError, StreamcastError, UsageError
from streamcast.stream.engine import stream
from streamcast.stream.input import MAX_ID_CHARS, LineReader, Observations, parser_for
from streamcast.stream.output import formatter
from streamcast.stream.state import StreamState

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = int(os.environ.get("STREAMCAST_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=EXAMPLES <= 100,  # the quick run is the same every time; `make fuzz` explores
)
REASONABLE = 1e15

# Pieces that parsers trip on, mixed with arbitrary text.
numbers = (
    st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, 1, -1, 1e308, -1e308, 5e-324, 2**63, -(2**63), 10**15, 1e15 + 1])
)
stamps = st.sampled_from(
    [
        "2024-01-01 00:00",
        "2024-01-01T01:00:00+05:00",
        "2024-01-01T02:00:00Z",
        "9999-12-31",
        "0001-01-01",
        "2024-02-30",
        "20240101",
        "1704067200",
        "2024-01",
        "",
        "now",
    ]
) | st.datetimes().map(str)
ids = st.sampled_from(["s0", "s1", "s2", "x", "", " ", "\ud800", "a\x00b", "é", "a,b", '"q"', "7" * 2000])
text = st.text(max_size=30)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | text | stamps | ids,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
keys = st.sampled_from(["series_id", "id", "timestamp", "time", "value", "y", "target"]) | text
# Lines close to good ones reach the checks after parsing; arbitrary ones test the parsing.
near_json = st.fixed_dictionaries(
    {
        "series_id": ids | json_values,
        "timestamp": stamps | numbers | json_values,
        "value": numbers | json_values,
    }
)
json_lines = (near_json | st.dictionaries(keys, json_values, max_size=5)).map(json.dumps) | st.builds(
    lambda depth: "[" * depth + "]" * depth, st.integers(0, 5000)
)
fields = ids | stamps | numbers.map(str) | text
near_csv = st.tuples(ids | text, stamps | text, numbers.map(str) | text)
csv_lines = (near_csv | st.lists(fields, min_size=0, max_size=5)).map(",".join)
byte_lines = st.binary(max_size=60)


def run_stream(model, lines: list[str]) -> None:
    """Parse and stream `lines` as the CLI does, checking every observation and every output line."""
    parser = parser_for(model)
    try:
        observations = parser.parse(lines, 1)
    except UsageError as exc:  # a header that cannot be mapped: exit 2, one line
        assert "\n" not in str(exc)
        return
    check_observations(observations)
    for fmt in ("jsonl", "csv"):
        out = formatter(fmt, model.horizon, model.quantiles)
        for batch in stream(model, [observations], StreamState(model)):
            text = out.format(batch)
            text.encode("utf-8")  # every id can be written
            if fmt == "jsonl":
                for line in text.splitlines():
                    row = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in output"))
                    assert all(x is None or math.isfinite(x) for x in row["forecast"])


def check_observations(obs: Observations) -> None:
    assert len(obs.values) == len(obs.series_ids) == len(obs.lines)
    assert all(math.isfinite(v) and abs(v) <= REASONABLE for v in obs.values.tolist())
    for sid in obs.series_ids:
        assert sid and len(sid) <= MAX_ID_CHARS
        sid.encode("utf-8")


@FUZZ
@given(lines=st.lists(byte_lines, max_size=8))
def test_fuzz_stream_takes_arbitrary_bytes(tiny_model, lines):
    import io

    reader = LineReader(io.BytesIO(b"\n".join(lines)))
    while (got := reader.read()) is not None:
        run_stream(tiny_model, got[1])


@FUZZ
@given(lines=st.lists(json_lines, max_size=8), good=st.booleans())
def test_fuzz_stream_takes_arbitrary_json_lines(tiny_model, lines, good):
    head = ['{"series_id": "s0", "timestamp": "2024-01-01T00:00", "value": 1}'] if good else []
    run_stream(tiny_model, head + lines)


@FUZZ
@given(lines=st.lists(csv_lines, max_size=8), good=st.booleans())
def test_fuzz_stream_takes_arbitrary_csv_lines(tiny_model, lines, good):
    run_stream(tiny_model, (["s0,2024-01-01 00:00,1"] if good else []) + lines)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 8))
@given(lines=st.lists(json_lines | csv_lines, max_size=6))
def test_fuzz_the_stream_command_answers_in_lines_and_exit_0_or_2(model_path, lines):
    result = CliRunner().invoke(
        main, ["stream", "-m", str(model_path)], input="\n".join(lines).encode("utf-8", "surrogatepass")
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 2)
    for line in result.stderr.splitlines():
        assert line.startswith(("line ", "stream: ", "Error: "))


# A tensor to put in place of one of the file's: which one, its shape, its dtype.
swaps = st.none() | st.tuples(
    st.integers(min_value=0),
    st.lists(st.integers(0, 5), max_size=3),
    st.sampled_from(["float32", "float64", "int64", "bool"]),
)


def rewrite(raw: bytes, meta, swap=None) -> bytes:
    """The file with other metadata (and one tensor swapped), sealed with a valid checksum: a crafted file."""
    import torch

    tensors = safetensors.torch.load(raw)
    if swap is not None:
        index, shape, dtype = swap
        tensors[sorted(tensors)[index % len(tensors)]] = torch.zeros(shape, dtype=getattr(torch, dtype))
    if isinstance(meta, dict):
        return safefile.write(tensors, meta)
    return safetensors.torch.save(tensors, metadata={"streamcast": json.dumps(meta)})


def metadata(raw: bytes) -> dict:
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(json.loads(raw[8 : 8 + size])["__metadata__"]["streamcast"])


def replace_at(meta, path: list, value):
    """`meta` with the value at `path` (keys or indices, as far as they reach) replaced."""
    if not path or not isinstance(meta, (dict, list)) or not meta:
        return value
    if isinstance(meta, dict):
        key = sorted(meta)[path[0] % len(meta)]
        return {**meta, key: replace_at(meta[key], path[1:], value)}
    i = path[0] % len(meta)
    return [*meta[:i], replace_at(meta[i], path[1:], value), *meta[i + 1 :]]


def use_model(path) -> None:
    """Everything a model is used for, through the CLI: info, forecast-free streaming of a line."""
    for args, stdin in (
        (["info", str(path)], None),
        (["info", "--json", str(path)], None),
        (["stream", "-m", str(path)], "s0,2024-01-01 00:00,1\n"),
    ):
        result = CliRunner().invoke(main, args, input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        if result.exit_code:
            assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")


@FUZZ
@given(flips=st.lists(st.integers(min_value=0), min_size=1, max_size=3))
def test_fuzz_model_with_bits_flipped_is_refused(model_path, tmp_path_factory, flips):
    raw = bytearray(model_path.read_bytes())
    for bit in flips:
        raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    path = tmp_path_factory.mktemp("flip") / "m.streamcast"
    path.write_bytes(bytes(raw))
    if bytes(raw) == model_path.read_bytes():
        return  # flipped back
    with pytest.raises(ModelFileError) as raised:
        sc.load(path)
    assert "\n" not in str(raised.value)


@FUZZ
@given(header=st.binary(max_size=200) | json_lines.map(str.encode), tail=st.binary(max_size=40))
def test_fuzz_model_with_an_arbitrary_header_is_refused(tmp_path_factory, header, tail):
    path = tmp_path_factory.mktemp("header") / "m.streamcast"
    path.write_bytes(struct.pack("<Q", len(header)) + header + tail)
    with pytest.raises(ModelFileError) as raised:
        sc.load(path)
    assert "\n" not in str(raised.value)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(where=st.lists(st.integers(min_value=0), max_size=4), value=json_values, swap=swaps)
def test_fuzz_model_with_crafted_metadata_loads_or_is_refused(
    model_path, tmp_path_factory, where, value, swap
):
    raw = model_path.read_bytes()
    path = tmp_path_factory.mktemp("crafted") / "m.streamcast"
    path.write_bytes(rewrite(raw, replace_at(metadata(raw), where, value), swap))
    try:
        sc.load(path)
    except ModelFileError as exc:
        assert "\n" not in str(exc)
        return
    use_model(path)


@settings(FUZZ, max_examples=max(5, EXAMPLES // 4))
@given(
    flips=st.lists(st.integers(min_value=0), max_size=2),
    where=st.lists(st.integers(min_value=0), max_size=3),
    value=json_values,
    craft=st.booleans(),
    swap=swaps,
)
def test_fuzz_state_file_damaged_or_crafted_loads_or_is_refused(
    tiny_model, tmp_path_factory, flips, where, value, craft, swap
):
    folder = tmp_path_factory.mktemp("state")
    state = StreamState(tiny_model)
    rows = [{"series_id": "s0", "timestamp": "2024-01-01T00:00", "value": 1.0}]
    for _ in stream(tiny_model, [Observations.from_records(rows, tiny_model)], state):
        pass
    raw = state.save(folder / "s.state").read_bytes()
    if craft:
        raw = rewrite(raw, replace_at(metadata(raw), where, value), swap)
    damaged = bytearray(raw)
    for bit in flips:
        damaged[(bit // 8) % len(damaged)] ^= 1 << (bit % 8)
    (folder / "s.state").write_bytes(bytes(damaged))
    try:
        loaded = StreamState.load(folder / "s.state", tiny_model)
    except ModelFileError as exc:
        assert "\n" not in str(exc)
        return
    assert not flips or bytes(damaged) == raw  # a flipped bit is always caught
    rows = [{"series_id": "s0", "timestamp": "2024-01-01T01:00", "value": 2.0}]
    try:
        for _ in stream(tiny_model, [Observations.from_records(rows, tiny_model)], loaded):
            pass
    except StreamcastError as exc:
        assert "\n" not in str(exc)
