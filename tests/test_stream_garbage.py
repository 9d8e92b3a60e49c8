"""Bad input never kills the stream: random garbage between good lines, in any micro-batching, and
every good line still gets its forecast."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamcast.cli import main
from streamcast.stream.engine import stream
from streamcast.stream.input import parser_for
from streamcast.stream.state import StreamState

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = [f"s0,2024-01-01 0{h}:00,{10 + h}.5" for h in range(6)]
GOOD_JSON = [
    json.dumps({"series_id": "s0", "timestamp": f"2024-01-01T0{h}:00:00", "value": 10 + h}) for h in range(6)
]
EXPECTED = [f"2024-01-01T0{h}:00:00" for h in range(6)]


garbage_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"), max_size=40
)
garbage_lines = st.lists(
    garbage_text
    | st.sampled_from(
        [
            "",
            " ",
            "s0",
            "s0,,",
            "s0,2024-01-01 03:00,",
            ",,,",
            '"',
            "{",
            "{}",
            "[1]",
            "nan",
            "1e999",
            "s0,2024-13-45 00:00,1",
        ]
    ),
    max_size=4,
)


def interleave(good: list[str], garbage: list[list[str]]) -> tuple[list[str], list[int]]:
    """Good lines first, each followed by some garbage; and the good lines' numbers (1-based)."""
    lines, numbers = [], []
    for i, line in enumerate(good):
        lines.append(line)
        numbers.append(len(lines))
        lines += garbage[i] if i < len(garbage) else []
    return lines, numbers


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    garbage=st.lists(garbage_lines, min_size=6, max_size=6),
    cuts=st.lists(st.integers(1, 40), max_size=5),
    as_json=st.booleans(),
)
def test_garbage_between_good_lines_is_skipped_in_any_micro_batching(model, garbage, cuts, as_json):
    lines, numbers = interleave(GOOD_JSON if as_json else GOOD, garbage)
    parser = parser_for(model)
    bounds = sorted({0, len(lines), *(c for c in cuts if c < len(lines))})
    batches = [parser.parse(lines[a:b], a + 1) for a, b in zip(bounds, bounds[1:], strict=False)]
    forecasts, events = [], []
    for batch in stream(model, batches, StreamState(model)):
        forecasts += [f for f in batch if f.series_id == "s0"]
        events += batch.events
    assert [f"{f.timestamp:%Y-%m-%dT%H:%M:%S}" for f in forecasts] == [e[:19] for e in EXPECTED]
    assert not {e.line for e in events} & set(numbers)  # no good line is ever reported


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.lists(st.binary(max_size=30), max_size=3), min_size=6, max_size=6))
def test_the_command_never_dies_on_random_bytes(model_path, garbage):
    lines, _ = interleave([g.encode() for g in GOOD], garbage)
    result = CliRunner().invoke(main, ["stream", "-m", str(model_path)], input=b"\n".join(lines))
    assert result.exit_code == 0, result.stderr
    assert result.exception is None
    out = [json.loads(line) for line in result.stdout.splitlines()]  # stdout stays valid JSON lines
    assert [o["timestamp"] for o in out if o["series_id"] == "s0"] == EXPECTED
    for message in result.stderr.splitlines()[:-1]:
        assert message.startswith("line ")
    assert result.stderr.splitlines()[-1].startswith("stream: ")


def test_a_real_process_survives_invalid_utf8_nul_bytes_crlf_and_a_huge_line(model_path):
    nasty = [
        b"\xff\xfe\xfa",
        b"s0\x00,2024-01-01 00:30,1",
        b"x" * 2_000_000,
        b"s0,2024-01-01 01:00,1e309",
        b"\r",
        b"{not json",
    ]
    lines, _ = interleave([g.encode() + b"\r" for g in GOOD], [nasty] * 6)
    done = subprocess.run(
        [sys.executable, "-m", "streamcast", "stream", "-m", str(model_path)],
        input=b"\n".join(lines),
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [o["timestamp"] for o in out if o["series_id"] == "s0"] == EXPECTED
    assert done.stderr.decode().splitlines()[-1].startswith("stream: 42 lines, accepted=")
