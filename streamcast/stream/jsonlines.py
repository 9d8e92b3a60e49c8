"""JSON lines (and dicts from Python) to observations: the first object that has the target fixes
the keys read from every later one; unknown keys are reported once each, up to MAX_REPORTED."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from streamcast.column_names import ID_NAMES, TARGET_NAMES, TIME_NAMES
from streamcast.stream.fields import show
from streamcast.stream.layout import check_given, find_key, missing_id
from streamcast.stream.observations import Event, LineBatch

if TYPE_CHECKING:
    from streamcast.stream.input import LineParser


class JsonLines:
    """JSON objects, one a line, by the keys the first good object fixed."""

    def __init__(self, parser: LineParser) -> None:
        self.parser = parser
        self.keys: tuple[str | None, str | None, str] | None = None  # id, time, value
        self.reported: set[str] = set()

    @property
    def fixed(self) -> bool:
        return self.keys is not None

    def parse(self, lines: list[str], first_line: int, batch: LineBatch) -> None:
        import json

        for k, line in enumerate(lines):
            if not line or line.isspace():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                batch.bad(first_line + k, "not valid JSON")
                continue
            except RecursionError:
                batch.bad(first_line + k, "not valid JSON (nested too deeply)")
                continue
            if not isinstance(obj, dict):
                batch.bad(first_line + k, "not a JSON object")
                continue
            self.object(obj, first_line + k, batch)

    def object(self, obj: Mapping, number: int, batch: LineBatch) -> None:
        """One object by every rule; the first with the target fixes the keys."""
        if self.keys is None and not self._fix_keys(obj, number, batch):
            return
        p = self.parser
        id_key, time_key, target_key = self.keys  # type: ignore[misc]
        for key in obj:
            if key not in self.keys and key not in p.covariates and key not in self.reported:
                if len(self.reported) >= MAX_REPORTED:
                    break  # a producer inventing keys must not grow memory or flood stderr
                self.reported.add(key)
                reason = f"unknown column {show(key)}"
                if len(self.reported) == MAX_REPORTED:
                    reason += (
                        f" (the last of {MAX_REPORTED} reported; later unknown keys are ignored silently)"
                    )
                batch.events.append(Event(number, "ignored", reason))
        if target_key not in obj:
            batch.bad(number, f"no {target_key!r} key")
            return
        if time_key is not None and time_key not in obj:
            batch.bad(number, f"no {time_key!r} key")
            return
        sid = obj.get(id_key) if id_key is not None else None
        if sid is None and p.series_count == 1:
            sid = p.default_id  # a model of one series knows whose the line is
        p.record(
            number,
            sid,
            obj.get(time_key) if time_key else None,
            obj[target_key],
            [obj.get(c) for c in p.covariates],
            batch,
        )

    def _fix_keys(self, obj: Mapping, number: int, batch: LineBatch) -> bool:
        """Fix the keys from `obj` if it has the target (and an id where the model needs one)."""
        p = self.parser
        c = p.columns
        target = find_key(obj, c.target, TARGET_NAMES)
        if target is None:
            batch.bad(number, f"no {c.target!r} key (pass --target KEY)")
            return False
        keys = (find_key(obj, c.id, ID_NAMES), find_key(obj, c.time, TIME_NAMES), target)
        check_given(
            p.given,
            {"--id-col": keys[0], "--time-col": keys[1], "--target": target},
            [str(k) for k in obj],
            f"the object on line {number}",
        )
        if keys[0] is None and p.series_count > 1:
            batch.bad(
                number, missing_id(p.covariates, p.series_count)
            )  # a stray object must not fix the layout
            return False
        self.keys = keys
        p.has_time = keys[1] is not None
        return True


MAX_REPORTED = 100  # unknown JSON keys reported, at most
