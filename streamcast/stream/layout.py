"""Which field of a line is which: a JSON key or a header column found by its name (the one given
as an option, else the usual names), CSV positions told by the number of fields, and the messages
for lines whose layout cannot be told."""

from __future__ import annotations

from collections.abc import Mapping

from streamcast.errors import UsageError

# CSV field positions: id, time, value, covariates, width (None: the line carries no such field)
Positions = tuple[int | None, int | None, int, tuple[int, ...], int]


def positional(width: int, n_covariates: int) -> Positions:
    """Field positions of a headerless line: value | time,value | id,time,value, then covariates."""
    id_at = 0 if width == 3 else None
    time_at = width - 2 if width >= 2 else None
    value_at = width - 1
    return id_at, time_at, value_at, tuple(range(width, width + n_covariates)), width + n_covariates


def expected(covariates: tuple[str, ...]) -> str:
    tail = "".join(f",{c}" for c in covariates)
    return f"value{tail}, time,value{tail} or id,time,value{tail} (or a header line)"


def missing_id(covariates: tuple[str, ...], series_count: int) -> str:
    tail = "".join(f",{c}" for c in covariates)
    return f"series id is missing (the model forecasts {series_count} series: send id,time,value{tail})"


def find_key(obj: Mapping, given: str | None, candidates: tuple[str, ...]) -> str | None:
    if given is not None and given in obj:
        return given
    lower = {k.lower(): k for k in obj if isinstance(k, str)}
    if given is not None and given.lower() in lower:
        return lower[given.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def pick(lower: dict[str, int], given: str | None, candidates: tuple[str, ...]) -> int | None:
    if given is not None and given.lower() in lower:
        return lower[given.lower()]
    return next((lower[c] for c in candidates if c in lower), None)


def check_given(
    given: Mapping[str, str], found: Mapping[str, str | None], names: list[str], where: str
) -> None:
    """Columns passed as options must be there: a silent fall-back to the usual names would
    misread every line."""
    for option, name in given.items():
        if found[option] is None or found[option].lower() != name.lower():
            raise UsageError(
                f"{option} {name!r} is not in {where} (it has: {', '.join(names)}); fix the option"
            )
