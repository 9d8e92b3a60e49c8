"""Stream forecasts as text: one line per observation, JSON lines or CSV, built for a whole batch.

Numbers are formatted by polars in one vectorised pass (float32 precision, the network's own, in
the shortest form that reads back exactly), timestamps once per distinct time in the batch; what is
left per line is one string template, so the bulk regime stays fast. A batch of a few lines (one
line at a time, interactively) is formatted row by row in Python to the same text, since each
polars call has a fixed cost that there outweighs the work.

JSON lines: {"series_id", "timestamp", "forecast": [H], "timestamps": [H target times],
"q0.1": [H] ... (models with quantiles), "warming_up"}, then with --watch "error", "score" (null when
not scored) and "anomaly". CSV: a header, then one row per observation:
series_id, timestamp, warming_up, f1..fH (the forecast h periods after `timestamp`), then
q0.1_1..q0.1_H and so on per quantile (then error, score, anomaly with --watch); the target times are left out (timestamp + h periods).
Timestamps are ISO 8601 (`2024-01-01T05:00:00`, with `+00:00` for zoned input), or the step
number for a model without a time axis.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from streamcast.features import FEW_NEW_TIMES, TIMES_AHEAD
from streamcast.forecasting import quantile_column
from streamcast.stream.engine import StreamBatch

OUTPUT_FORMATS = ("jsonl", "csv")


MAX_CACHED_IDS = 65_536  # the id texts kept: memory stays bounded however many series pass
MAX_CACHED_TIMES = 4_096  # the times whose texts are kept

SMALL_BATCH = 16  # rows up to which a batch is formatted row by row in Python
# polars writes float32 in positional notation inside these bounds and switches to exponents
# outside them; numpy's positional shortest form is the same text inside (tested)
_PLAIN_LOW, _PLAIN_HIGH = 1e-5, 1e12


class _Columns:
    """Text pieces as polars columns: one vectorised pass per piece, for batches of many rows."""

    @staticmethod
    def numbers(values: np.ndarray, missing: str) -> pl.Series:
        rows, width = values.shape
        flat = pl.Series(values.reshape(-1)).cast(pl.String)
        if not np.isfinite(values).all():
            flat = flat.set(pl.Series(~np.isfinite(values.reshape(-1))), None).fill_null(missing)
        return flat.reshape((rows, width)).arr.join(",")

    @staticmethod
    def texts(texts: list[str]) -> pl.Series:
        return pl.Series(texts, dtype=pl.String)

    @staticmethod
    def gather(texts: list[str], pick: np.ndarray) -> pl.Series:
        return pl.Series(texts, dtype=pl.String).gather(pl.Series(pick, dtype=pl.Int64))

    @staticmethod
    def booleans(flags: np.ndarray) -> pl.Series:
        return pl.Series(np.where(flags, "true", "false"), dtype=pl.String)

    @staticmethod
    def join(parts: list) -> str:
        row = pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])
        return "".join(pl.select(row).to_series().to_list())


class _Rows:
    """The same pieces as Python lists, for a few rows: there each polars call's fixed cost (a
    query planned and run per piece) was most of a line's time, one line at a time."""

    @staticmethod
    def numbers(values: np.ndarray, missing: str) -> list[str]:
        text = np.format_float_positional
        return [
            ",".join(text(v, unique=True, trim="0") if np.isfinite(v) else missing for v in row)
            for row in values
        ]

    @staticmethod
    def texts(texts: list[str]) -> list[str]:
        return texts

    @staticmethod
    def gather(texts: list[str], pick: np.ndarray) -> list[str]:
        return [texts[i] for i in pick.tolist()]

    @staticmethod
    def booleans(flags: np.ndarray) -> list[str]:
        return ["true" if f else "false" for f in flags.tolist()]

    @staticmethod
    def join(parts: list) -> str:
        rows = next(len(p) for p in parts if not isinstance(p, str))
        return "".join("".join(p if isinstance(p, str) else p[r] for p in parts) for r in range(rows))


def kit_for(batch: StreamBatch) -> type[_Columns] | type[_Rows]:
    """Row by row for a few rows whose numbers polars writes without exponents; columns otherwise."""
    if len(batch) > SMALL_BATCH:
        return _Columns
    numbers = [batch.values]
    if batch.watched is not None:
        numbers += [batch.watched.error, batch.watched.score]
    return _Rows if all(_plain(x) for x in numbers) else _Columns


def _plain(values: np.ndarray) -> bool:
    size = np.abs(values.astype(np.float32))
    return bool(np.all((size == 0) | ((size >= _PLAIN_LOW) & (size < _PLAIN_HIGH)) | ~np.isfinite(size)))


class _Text:
    """Shared pieces: series ids and times as text, cached, and float blocks joined."""

    missing = "null"  # what a forecast that is not a finite number is written as (it never should be)

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.stamps: dict[tuple, list[str]] = {}  # (time, steps, zone) -> its text and the steps' after

    def numbers(self, values: np.ndarray) -> list[str]:
        """(R, K) floats -> R strings "v1,v2,...,vK"."""
        if not len(values):
            return []
        return list(self.number_texts(_Columns, values))

    def number_texts(self, kit, values: np.ndarray):
        """(R, K) floats in float32 precision, the shortest text that reads back exactly."""
        return kit.numbers(values.astype(np.float32), self.missing)

    def id_texts(self, kit, series_ids: list[str]):
        texts = self.ids
        return kit.texts([texts[s] if s in texts else self._id(s) for s in series_ids])

    def watch_fields(self, kit, batch: StreamBatch, names: tuple[str, str, str]) -> list:
        """The error, score and flag (--watch) as `join` pieces, each after its `names` prefix;
        none when the batch is not watched."""
        w = batch.watched
        if w is None:
            return []
        error = self.number_texts(kit, w.error[:, None])
        score = self.number_texts(kit, w.score[:, None])
        return [names[0], error, names[1], score, names[2], kit.booleans(w.anomaly)]

    def cache(self, sid: str, text: str) -> str:
        if len(self.ids) >= MAX_CACHED_IDS:
            self.ids.clear()
        self.ids[sid] = text
        return text

    def times(self, batch: StreamBatch, steps: int) -> tuple[np.ndarray, list[list[str]]]:
        """For each row, the index of its time among the distinct ones; their texts and `steps` after.

        The texts of recent times are kept: one line at a time, each series of an hour asked for
        the same 25 texts, which polars made afresh for every line."""
        unique, inverse = np.unique(batch.times, return_inverse=True)
        keys = [(t, steps, batch.time_zone) for t in unique.tolist()]
        texts = [self.stamps.get(key) for key in keys]
        new = [u for u, text in enumerate(texts) if text is None]
        if new:
            # A new time of a live stream is one line in a hundred, and it paid for a polars call:
            # the texts of the next TIMES_AHEAD times are made with it, as the same sums (a fixed
            # step; months are moved from each time itself).
            ahead = TIMES_AHEAD if len(new) <= FEW_NEW_TIMES and not batch.grid.months else 0
            width = steps + 1 + ahead
            grid = batch.grid.shift(np.repeat(unique[new], width), np.tile(np.arange(width), len(new)))
            flat = batch.grid.text(grid, batch.time_zone)
            if len(self.stamps) + len(new) * (ahead + 1) > MAX_CACHED_TIMES:
                self.stamps.clear()
            for i, u in enumerate(new):
                row, at = flat[i * width : (i + 1) * width], grid[i * width : (i + 1) * width].tolist()
                for j in range(ahead, -1, -1):  # the time itself last: its own key is set for sure
                    self.stamps[(at[j], steps, batch.time_zone)] = row[j : j + steps + 1]
                texts[u] = self.stamps[keys[u]]
        return inverse, texts


class JsonLines(_Text):
    """One JSON object per observation."""

    def header(self) -> str:
        return ""

    def format(self, batch: StreamBatch) -> str:
        n = len(batch)
        if n == 0:
            return ""
        horizon = batch.values.shape[1]
        inverse, stamps = self.times(batch, horizon)
        indexed = batch.grid.indexed
        heads, tails = [], []
        for texts in stamps:
            quoted = texts if indexed else [f'"{t}"' for t in texts]
            heads.append(quoted[0])
            tails.append(",".join(quoted[1:]))
        kit = kit_for(batch)
        parts = [
            '{"series_id":',
            self.id_texts(kit, batch.series_ids),
            ',"timestamp":',
            kit.gather(heads, inverse),
            ',"forecast":[',
            point := self.number_texts(kit, batch.values[:, :, batch.point_index]),
            '],"timestamps":[',
            kit.gather(tails, inverse),
            "]",
        ]
        for i, q in enumerate(batch.quantiles):
            texts = point if i == batch.point_index else self.number_texts(kit, batch.values[:, :, i])
            parts += [f",{json.dumps(quantile_column(q))}:[", texts, "]"]
        parts += [',"warming_up":', kit.booleans(batch.warming_up)]
        parts += self.watch_fields(kit, batch, (',"error":', ',"score":', ',"anomaly":'))
        return kit.join([*parts, "}\n"])

    def _id(self, sid: str) -> str:
        text = self.ids.get(sid)
        if text is None:
            text = self.cache(sid, json.dumps(sid, ensure_ascii=False))
        return text


class Csv(_Text):
    """A header, then one row per observation: id, time, warming_up, the H forecasts, the quantiles."""

    missing = ""

    def __init__(self, horizon: int, quantiles: tuple[float, ...], watching: bool = False) -> None:
        super().__init__()
        self.horizon = horizon
        self.quantiles = quantiles
        self.watching = watching

    def header(self) -> str:
        cols = ["series_id", "timestamp", "warming_up", *(f"f{h}" for h in range(1, self.horizon + 1))]
        for q in self.quantiles:
            cols += [f"{quantile_column(q)}_{h}" for h in range(1, self.horizon + 1)]
        if self.watching:
            cols += ["error", "score", "anomaly"]
        return ",".join(cols) + "\n"

    def format(self, batch: StreamBatch) -> str:
        if len(batch) == 0:
            return ""
        inverse, stamps = self.times(batch, 0)
        kit = kit_for(batch)
        times = kit.gather([texts[0] for texts in stamps], inverse)
        parts = [self.id_texts(kit, batch.series_ids), ",", times, ",", kit.booleans(batch.warming_up), ","]
        point = self.number_texts(kit, batch.values[:, :, batch.point_index])
        parts.append(point)
        for i in range(len(batch.quantiles)):  # the median is the point: formatted once
            parts += [",", point if i == batch.point_index else self.number_texts(kit, batch.values[:, :, i])]
        parts += self.watch_fields(kit, batch, (",", ",", ","))
        return kit.join([*parts, "\n"])

    def _id(self, sid: str) -> str:
        text = self.ids.get(sid)
        if text is None:
            needs_quotes = any(c in sid for c in ',"\n\r') or sid != sid.strip()
            text = self.cache(sid, '"' + sid.replace('"', '""') + '"' if needs_quotes else sid)
        return text


def formatter(
    output_format: str, horizon: int, quantiles: tuple[float, ...], watching: bool = False
) -> JsonLines | Csv:
    """`watching`: CSV rows end with error, score and anomaly (JSON objects carry them when present)."""
    if output_format == "csv":
        return Csv(horizon, quantiles, watching)
    return JsonLines()
