"""One field of one input line, checked: a value, a series id, a step number. A bad field raises
`BadLine`, whose message says what is wrong; the parser turns it into a skipped line."""

from __future__ import annotations

import math
import re

from streamcast.reading import MAX_VALUE, MISSING

MAX_STEP = 10**15  # step numbers of a model without a time axis
MAX_ID_CHARS = 1000
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class BadLine(Exception):
    """A line that cannot become an observation; the message is the reason."""


def check_value(x: float, name: str) -> None:
    """Values must be finite and within ±MAX_VALUE: beyond it, scaling and forecasts overflow."""
    if not math.isfinite(x):
        raise BadLine(f"{name} is {'NaN' if x != x else 'infinite'}")
    if abs(x) > MAX_VALUE:
        raise BadLine(f"{name} {x:g} is out of range (beyond ±{MAX_VALUE:g})")


def check_step(step: int, shown) -> int:
    if abs(step) > MAX_STEP:
        raise BadLine(f"time {show(shown)} is out of range (beyond ±{MAX_STEP:g} steps)")
    return step


def read_series_id(raw) -> str:
    """A series id as text that every output can carry: not empty, no control characters, valid
    Unicode (JSON allows lone UTF-16 surrogates, which no UTF-8 output can write)."""
    if isinstance(raw, str):
        sid = raw.strip()
    elif raw is None or isinstance(raw, (bool, dict, list)):
        sid = ""
    else:
        sid = str(raw)
    if not sid:
        raise BadLine("series id is missing")
    if len(sid) > MAX_ID_CHARS:
        raise BadLine(f"series id {show(sid)} is longer than {MAX_ID_CHARS} characters")
    if not sid.isascii():
        try:
            sid.encode("utf-8")
        except UnicodeEncodeError:
            raise BadLine(f"series id {show(sid)} is not valid Unicode (a lone surrogate)") from None
    if CONTROL.search(sid):
        raise BadLine(f"series id {show(sid)} has a control character")
    return sid


def read_number(raw, name: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, float):
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadLine(f"{name} {show(raw)} is not a number")
    if isinstance(raw, str) and raw.strip() in MISSING:
        return None
    if isinstance(raw, str) and "_" in raw:  # Python reads 1_000 as 1000; a CSV never means that
        raise BadLine(f"{name} {show(raw)} is not a number")
    try:
        return float(raw)
    except (ValueError, OverflowError):
        raise BadLine(f"{name} {show(raw)} is not a number") from None


def read_values_ahead(raw, name: str, steps: int) -> list[float]:
    """A future covariate's values for the next `steps` steps: a JSON list, or numbers separated by
    spaces (a CSV field); every one a finite number."""
    if isinstance(raw, str):
        items = raw.split()
    elif isinstance(raw, list):
        items = raw
    elif raw is not None and steps == 1:
        items = [raw]
    else:
        items = None
    if items is None or len(items) != steps:
        got = "nothing" if raw is None else f"{len(items)} values" if items is not None else show(raw)
        raise BadLine(
            f"future covariate {name!r} must hold its next {steps} values (a JSON list, or numbers "
            f"separated by spaces in CSV), got {got}"
        )
    values = []
    for item in items:
        x = read_number(item, f"future covariate {name!r}")
        if x is None:
            raise BadLine(f"future covariate {name!r} has a missing value")
        check_value(x, f"future covariate {name!r}")
        values.append(x)
    return values


def show(raw) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."
