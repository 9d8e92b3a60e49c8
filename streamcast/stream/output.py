"""Stream forecasts as text: one line per observation, JSON lines or CSV, built for a whole batch.

Numbers are formatted by polars in one vectorised pass (float32 precision, the network's own, in
the shortest form that reads back exactly), timestamps once per distinct time in the batch; what is
left per line is one string template, so the bulk regime stays fast.

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

from streamcast.forecasting import quantile_column
from streamcast.stream.engine import StreamBatch

OUTPUT_FORMATS = ("jsonl", "csv")


MAX_CACHED_IDS = 65_536  # the id texts kept: memory stays bounded however many series pass
MAX_CACHED_TIMES = 4_096  # the times whose texts are kept


class _Text:
    """Shared pieces: series ids and times as text, cached, and float blocks joined by polars."""

    missing = "null"  # what a forecast that is not a finite number is written as (it never should be)

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.stamps: dict[tuple, list[str]] = {}  # (time, steps, zone) -> its text and the steps' after

    def numbers(self, values: np.ndarray) -> list[str]:
        """(R, K) floats -> R strings "v1,v2,...,vK"."""
        return self.number_texts(values).to_list()

    def number_texts(self, values: np.ndarray) -> pl.Series:
        """As `numbers`, as a polars column (what `lines` joins)."""
        rows, width = values.shape
        if rows == 0:
            return pl.Series([], dtype=pl.String)
        numbers = values.astype(np.float32).reshape(-1)
        flat = pl.Series(numbers).cast(pl.String)
        if not np.isfinite(numbers).all():
            flat = flat.set(pl.Series(~np.isfinite(numbers)), None).fill_null(self.missing)
        return flat.reshape((rows, width)).arr.join(",")

    def id_texts(self, series_ids: list[str]) -> pl.Series:
        texts = self.ids
        return pl.Series([texts[s] if s in texts else self._id(s) for s in series_ids], dtype=pl.String)

    @staticmethod
    def lines(parts: list) -> str:
        """Text pieces (str for every row, or a Series of one per row) joined row by row, in one pass."""
        row = pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])
        return "".join(pl.select(row).to_series().to_list())

    def watch_fields(self, batch: StreamBatch, names: tuple[str, str, str]) -> list:
        """The error, score and flag (--watch) as `lines` pieces, each after its `names` prefix;
        none when the batch is not watched."""
        w = batch.watched
        if w is None:
            return []
        error = self.number_texts(w.error[:, None])
        score = self.number_texts(w.score[:, None])
        return [names[0], error, names[1], score, names[2], _booleans(w.anomaly)]

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
            k = np.arange(steps + 1)
            grid = batch.grid.shift(np.repeat(unique[new], steps + 1), np.tile(k, len(new)))
            flat = batch.grid.text(grid, batch.time_zone)
            if len(self.stamps) + len(new) > MAX_CACHED_TIMES:
                self.stamps.clear()
            for i, u in enumerate(new):
                texts[u] = self.stamps[keys[u]] = flat[i * (steps + 1) : (i + 1) * (steps + 1)]
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
        pick = pl.Series(inverse, dtype=pl.Int64)
        parts = [
            '{"series_id":',
            self.id_texts(batch.series_ids),
            ',"timestamp":',
            pl.Series(heads, dtype=pl.String).gather(pick),
            ',"forecast":[',
            point := self.number_texts(batch.values[:, :, batch.point_index]),
            '],"timestamps":[',
            pl.Series(tails, dtype=pl.String).gather(pick),
            "]",
        ]
        for i, q in enumerate(batch.quantiles):
            texts = point if i == batch.point_index else self.number_texts(batch.values[:, :, i])
            parts += [f",{json.dumps(quantile_column(q))}:[", texts, "]"]
        parts += [',"warming_up":', _booleans(batch.warming_up)]
        parts += self.watch_fields(batch, (',"error":', ',"score":', ',"anomaly":'))
        return self.lines([*parts, "}\n"])

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
        times = pl.Series([texts[0] for texts in stamps], dtype=pl.String).gather(
            pl.Series(inverse, dtype=pl.Int64)
        )
        parts = [self.id_texts(batch.series_ids), ",", times, ",", _booleans(batch.warming_up), ","]
        point = self.number_texts(batch.values[:, :, batch.point_index])
        parts.append(point)
        for i in range(len(batch.quantiles)):  # the median is the point: formatted once
            parts += [",", point if i == batch.point_index else self.number_texts(batch.values[:, :, i])]
        parts += self.watch_fields(batch, (",", ",", ","))
        return self.lines([*parts, "\n"])

    def _id(self, sid: str) -> str:
        text = self.ids.get(sid)
        if text is None:
            needs_quotes = any(c in sid for c in ',"\n\r') or sid != sid.strip()
            text = self.cache(sid, '"' + sid.replace('"', '""') + '"' if needs_quotes else sid)
        return text


def _booleans(flags: np.ndarray) -> pl.Series:
    return pl.Series(np.where(flags, "true", "false"), dtype=pl.String)


def formatter(
    output_format: str, horizon: int, quantiles: tuple[float, ...], watching: bool = False
) -> JsonLines | Csv:
    """`watching`: CSV rows end with error, score and anomaly (JSON objects carry them when present)."""
    if output_format == "csv":
        return Csv(horizon, quantiles, watching)
    return JsonLines()
