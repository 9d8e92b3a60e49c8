"""Format detection: which of the first lines at hand fixes the format (JSON lines or CSV) and the
layout of a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamcast.errors import UsageError
from streamcast.stream.csvlines import split_csv
from streamcast.stream.observations import LineBatch

if TYPE_CHECKING:
    from streamcast.stream.input import LineParser


def guess_format(line: str) -> str:
    return "jsonl" if line.lstrip().startswith("{") else "csv"


def detect_start(parser: LineParser, lines: list[str]) -> int:
    """Where the format and layout are to be read from: of the first line of each shape (JSON
    keys, or CSV field count) among the first lines at hand, the one under which most of the
    lines from it on parse; ties go to the earlier. A stray first line cannot decide alone."""
    window = [k for k, line in enumerate(lines[: DETECT_LINES * 4]) if line.strip()][:DETECT_LINES]
    shapes: dict[tuple, int] = {}
    for k in window:
        shape = _shape(lines[k], parser.format)
        if shape is not None:
            shapes.setdefault(shape, k)
    if len(shapes) < 2:
        return 0
    best, best_score = 0, 0
    for k in sorted(shapes.values()):
        score = _score(parser, lines[k : window[-1] + 1], k, lines, window, first=best_score == 0)
        if score > best_score:
            best, best_score = k, score
    return best


def _score(
    parser: LineParser, lines: list[str], k: int, every: list[str], window: list[int], first: bool
) -> int:
    """How many of `lines` a fresh parser that starts at their first one accepts (a header counts);
    a header that cannot be mapped raises when it comes first and the lines after it fit it."""
    trial = parser.trial(parser.format or guess_format(lines[0]))
    scratch = LineBatch(parser.row_width)
    try:
        trial.reader(trial.format).parse(lines, 1, scratch)
    except UsageError:
        later = [j for j in window if j > k]
        fits = not later or _shape(every[later[0]], parser.format) == _shape(every[k], parser.format)
        if first and fits:
            raise  # a real header: the lines after it have its fields, so they would be misread
        return 0  # a stray line that looks like a header
    return len(scratch.values) + (trial.csv.header is not None)


def _shape(line: str, fmt: str | None) -> tuple | None:
    """What a line looks like before it is read: its JSON keys, or its number of CSV fields."""
    if (fmt or guess_format(line)) == "jsonl":
        import json

        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return None
        return ("jsonl", tuple(sorted(map(str, obj)))) if isinstance(obj, dict) else None
    return ("csv", len(split_csv(line)))


DETECT_LINES = 64  # the format is detected among the first lines at hand, at most this many
