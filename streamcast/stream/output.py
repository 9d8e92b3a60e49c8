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

from streamcast.column_names import quantile_column
from streamcast.features import FEW_NEW_TIMES, TIMES_AHEAD
from streamcast.stream.engine import StreamBatch

OUTPUT_FORMATS = ("jsonl", "csv")


MAX_CACHED_IDS = 65_536  # the id texts kept: memory stays bounded however many series pass
MAX_CACHED_TIMES = 4_096  # the times whose texts are kept

SMALL_BATCH = 16  # rows up to which a batch is formatted row by row in Python
_NOT_FINITE = {"NaN", "inf", "-inf"}  # polars' text for the floats written as `missing`


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
    def join(parts: list) -> memoryview:
        """The rows' texts, concatenated, as UTF-8: the bytes of the Arrow column itself. Python
        strings of each row, joined and encoded, cost 12x as long, with the GIL held, which the
        network's thread then waits for (8 ms against 116 ms for 100,000 rows)."""
        import pyarrow as pa  # here: a stream of a line at a time never needs it (its start-up)

        row = pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])
        array = pl.select(row).to_series().to_arrow()
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        array = array.cast(pa.large_string())  # a no-op for polars' own type
        _, offsets, data = array.buffers()
        at = np.frombuffer(offsets, dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        return memoryview(data)[int(at[0]) : int(at[-1])]


class _Rows:
    """The same pieces as Python lists, for a few rows: there each polars query's fixed cost (one
    planned and run per piece) was most of a line's time, one line at a time. The numbers are
    still polars' own text (one cast, no query: 18 µs for a line's 72 numbers, against 56 µs for
    numpy's shortest text), so both kits write the same bytes."""

    @staticmethod
    def numbers(values: np.ndarray, missing: str) -> list[str]:
        rows, width = values.shape
        flat = pl.Series(values.reshape(-1)).cast(pl.String).to_list()
        if not np.isfinite(values).all():
            flat = [missing if text in _NOT_FINITE else text for text in flat]
        return [",".join(flat[r * width : (r + 1) * width]) for r in range(rows)]

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
    def join(parts: list) -> bytes:
        rows = next(len(p) for p in parts if not isinstance(p, str))
        return "".join(
            "".join(p if isinstance(p, str) else p[r] for p in parts) for r in range(rows)
        ).encode()


def kit_for(batch: StreamBatch) -> type[_Columns] | type[_Rows]:
    """Row by row for a few rows, columns otherwise."""
    return _Rows if len(batch) <= SMALL_BATCH else _Columns


class _Text:
    """Shared pieces: series ids and times as text, cached, and float blocks joined."""

    missing = "null"  # what a forecast that is not a finite number is written as (it never should be)

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.stamps: dict[tuple, list[str]] = {}  # (time, steps, zone) -> its text and the steps' after

    def format(self, batch: StreamBatch) -> str:
        """The batch's lines as text (`render`'s bytes, decoded)."""
        return bytes(self.render(batch)).decode()

    def render(self, batch: StreamBatch) -> bytes | memoryview:
        """The batch's lines, UTF-8 encoded, as they are written."""
        raise NotImplementedError

    def numbers(self, values: np.ndarray) -> list[str]:
        """(R, K) floats -> R strings "v1,v2,...,vK"."""
        if not len(values):
            return []
        return list(self.number_texts(_Columns, values))

    def number_texts(self, kit, values: np.ndarray):
        """(R, K) floats in float32 precision, the shortest text that reads back exactly."""
        return kit.numbers(values.astype(np.float32), self.missing)

    def quantile_texts(self, kit, batch: StreamBatch) -> list:
        """Each output column's (R,) texts ("v1,...,vH"), in `batch.quantiles` order (one column
        for a point model), all formatted in one pass: per column, a line at a time paid the
        fixed cost of a polars Series three times over."""
        rows, steps, columns = batch.values.shape
        flat = np.ascontiguousarray(batch.values.transpose(2, 0, 1)).reshape(columns * rows, steps)
        texts = self.number_texts(kit, flat)
        return [texts[q * rows : (q + 1) * rows] for q in range(columns)]

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
        if len(batch.times) == 1:  # a line at a time: without np.unique's sort
            unique, inverse = batch.times, np.zeros(1, dtype=np.int64)
        else:
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

    def render(self, batch: StreamBatch) -> bytes | memoryview:
        n = len(batch)
        if n == 0:
            return b""
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
            (blocks := self.quantile_texts(kit, batch))[batch.point_index],
            '],"timestamps":[',
            kit.gather(tails, inverse),
            "]",
        ]
        for q, texts in zip(batch.quantiles, blocks[: len(batch.quantiles)], strict=True):
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

    def render(self, batch: StreamBatch) -> bytes | memoryview:
        if len(batch) == 0:
            return b""
        inverse, stamps = self.times(batch, 0)
        kit = kit_for(batch)
        times = kit.gather([texts[0] for texts in stamps], inverse)
        parts = [self.id_texts(kit, batch.series_ids), ",", times, ",", kit.booleans(batch.warming_up), ","]
        blocks = self.quantile_texts(kit, batch)
        parts.append(blocks[batch.point_index])
        for texts in blocks[: len(batch.quantiles)]:  # the median's text is the point's
            parts += [",", texts]
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
