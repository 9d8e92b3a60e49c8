"""Pictures: forecasts against history and actual values, and a model's training curves.

matplotlib is an optional extra (`streamcast[plot]`), imported only here and only when drawing.
Figures are built with the object-oriented API (no pyplot), so drawing never changes the backend or
the global state of a program that imports streamcast, and nothing stays open between calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from streamcast.atomic import atomic_path, check_writable
from streamcast.errors import UsageError
from streamcast.reading import SeriesFrame

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
_FORECAST = "tab:blue"
_HISTORY = "0.35"
_ACTUAL = "black"


def check_figure_path(path: str | Path) -> None:
    """Fail before any work is done when the picture cannot be written: a suffix we do not draw,
    or matplotlib not installed."""
    if Path(path).suffix.lower() not in FIGURE_SUFFIXES:
        raise UsageError(f"cannot draw {str(path)!r}: the picture must end in {', '.join(FIGURE_SUFFIXES)}")
    check_writable(path, "picture")
    _figure_class()


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError("drawing pictures needs matplotlib: pip install 'streamcast[plot]'") from None
    return Figure


def plot_forecasts(
    data: SeriesFrame,
    forecasts: pl.DataFrame,
    path: str | Path,
    *,
    history: int | None = None,
    title: str = "Forecast",
) -> Path:
    """One panel per series of `forecasts` (as `streamcast.forecast` returns it): the last `history`
    steps before the origin (default: four horizons), the forecast, its outermost quantile interval,
    and the actual values after the origin where `data` has them (a forecast made `as_of` the past).

    >>> plot_forecasts(data, forecast(model, data, as_of="2024-03-01"), "march.png")  # doctest: +SKIP
    """
    check_figure_path(path)
    ids = forecasts["series_id"].unique(maintain_order=True).to_list()
    if not ids:
        raise UsageError("there is nothing to draw: the forecast table is empty")
    horizon = int(forecasts["step"].max())
    history = 4 * horizon if history is None else history
    if history < 1:
        raise UsageError("--history must be at least 1 step")
    interval = _interval_columns(forecasts.columns)
    Figure = _figure_class()
    fig = Figure(figsize=(10, 1.2 + 2.6 * len(ids)), layout="constrained")
    axes = fig.subplots(len(ids), 1, squeeze=False)[:, 0]
    for ax, sid in zip(axes, ids, strict=True):
        rows = forecasts.filter(pl.col("series_id") == sid)
        _draw_series(ax, data, rows, sid, history, interval)
        ax.set_ylabel(data.columns.target or "value")
    axes[-1].set_xlabel(_time_label(data))
    legend = {}  # label -> handle, across panels: a series without actual values lacks that line
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend), frameon=False)
    fig.suptitle(title, fontsize="large")
    return _save(fig, path)


def _draw_series(ax, data: SeriesFrame, rows: pl.DataFrame, sid: str, history: int, interval) -> None:
    dtype = data.frame["timestamp"].dtype
    rows = rows.with_columns(pl.col("origin", "timestamp").cast(dtype))  # dates come back as dates
    origin = rows["origin"][0]
    series = data.frame.with_columns(data.imputed().alias("imputed")).filter(pl.col("series_id") == sid)
    past = series.filter(pl.col("timestamp") <= origin)
    past = past.tail(min(history, past.height))  # a --history of 400 digits overflows polars
    after = series.filter((pl.col("timestamp") > origin) & (pl.col("timestamp") <= rows["timestamp"].max()))
    ax.plot(_x(past["timestamp"]), past["value"].to_numpy(), color=_HISTORY, lw=1.2, label="history")
    # The actual and forecast lines start at the last observed value: both visibly continue the history.
    last_x, last_y = _x(past["timestamp"].tail(1)), past["value"].tail(1).to_numpy()
    if after.height:
        # Interpolated values are not actuals (scores leave them out too): a gap in the line.
        actual = after.select(pl.when("imputed").then(None).otherwise("value")).to_series()
        ax.plot(
            np.concatenate([last_x, _x(after["timestamp"])]),
            np.concatenate([last_y, actual.to_numpy()]),
            color=_ACTUAL,
            lw=1.2,
            label="actual",
        )
    filled = pl.concat([past, after]).filter("imputed")
    if filled.height:
        ax.plot(
            _x(filled["timestamp"]),
            filled["value"].to_numpy(),
            "o",
            ms=3,
            mfc="none",
            color=_ACTUAL,
            label="interpolated (not observed)",
        )
    x = np.concatenate([last_x, _x(rows["timestamp"])])
    y = np.concatenate([last_y, rows["forecast"].to_numpy()])
    if interval is not None:
        lower, upper, label = interval
        ax.fill_between(
            _x(rows["timestamp"]),
            rows[lower].to_numpy(),
            rows[upper].to_numpy(),
            color=_FORECAST,
            alpha=0.2,
            lw=0,
            label=label,
        )
    ax.plot(x, y, color=_FORECAST, lw=1.8, label="forecast")
    ax.axvline(x[0], color="0.6", lw=0.8, ls=":")
    new = " (new to the model)" if "new_series" in rows.columns and rows["new_series"][0] else ""
    ax.set_title(f"{sid}: forecast from {_when(origin)}{new}", loc="left", fontsize="medium")
    ax.grid(alpha=0.3)
    _date_axis(ax, data)


def _interval_columns(columns: Sequence[str]) -> tuple[str, str, str] | None:
    """The outermost quantile columns (q0.1 … q0.9) and a legend label for the band between them."""
    quantiles = sorted((float(c[1:]), c) for c in columns if c.startswith("q") and _is_number(c[1:]))
    if len(quantiles) < 2:
        return None
    (lo, lower), (hi, upper) = quantiles[0], quantiles[-1]
    return lower, upper, f"{hi - lo:.0%} interval ({lower}–{upper})"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _x(timestamps: pl.Series) -> np.ndarray:
    """Matplotlib positions: local wall-clock time for zoned data (what the user reads), else as is."""
    if isinstance(timestamps.dtype, pl.Datetime) and timestamps.dtype.time_zone:
        timestamps = timestamps.dt.replace_time_zone(None)
    return timestamps.to_numpy()


def _when(origin) -> str:
    return origin.strftime("%Y-%m-%d %H:%M") if hasattr(origin, "strftime") else f"step {origin}"


def _time_label(data: SeriesFrame) -> str:
    dtype = data.frame["timestamp"].dtype
    if not isinstance(dtype, pl.Datetime):
        return "step"
    return f"time ({dtype.time_zone})" if dtype.time_zone else "time"


def _date_axis(ax, data: SeriesFrame) -> None:
    if isinstance(data.frame["timestamp"].dtype, pl.Datetime):
        from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def plot_training(
    history: Sequence[dict], path: str | Path, *, clip: float | None = None, title: str = "Training"
) -> Path:
    """Four panels per epoch from a model's `info["history"]`: train and validation loss (best epoch
    marked), the gradient norm before clipping (median and max, with the clip threshold), the share
    of clipped steps, and the gradient reach. What to look at when training goes wrong.

    >>> plot_training(model.info["history"], "training.png", clip=1.0)  # doctest: +SKIP
    """
    check_figure_path(path)
    if not history:
        raise UsageError("there is nothing to draw: the training history is empty")
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = np.array([h["epoch"] for h in history])
    Figure = _figure_class()
    fig = Figure(figsize=(11, 7), layout="constrained")
    (loss, norm), (clipped, reach) = fig.subplots(2, 2, sharex=True)

    loss.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:blue", label="train")
    loss.plot(epochs, [h["val_loss"] for h in history], "o-", color="tab:orange", label="validation")
    best = int(np.nanargmin([h["val_loss"] for h in history]))
    loss.plot(
        epochs[best],
        history[best]["val_loss"],
        "*",
        color="tab:red",
        ms=14,
        label=f"best (epoch {epochs[best]})",
    )
    loss.set(title="Loss (scaled units)", ylabel="loss")
    loss.legend(frameon=False)

    norm.plot(epochs, [h["grad_norm_median"] for h in history], "o-", color="tab:green", label="median")
    norm.plot(epochs, [h["grad_norm_max"] for h in history], "o--", color="tab:purple", label="max")
    if clip:
        norm.axhline(clip, color="tab:red", ls=":", label=f"--clip {clip:g}")
    norm.set(title="Gradient norm before clipping", ylabel="global L2 norm", yscale="log")
    norm.legend(frameon=False)

    bars = clipped.bar(epochs, [100 * h["clipped_share"] for h in history], color="tab:red", alpha=0.7)
    clipped.bar_label(bars, fmt="%.0f%%", fontsize="small")
    # Headroom above 100% for the bar labels; the ticks stop at 100%.
    clipped.set(title="Steps clipped", ylabel="share of optimizer steps", ylim=(0, 115), xlabel="epoch")
    clipped.set_yticks(range(0, 101, 25))
    clipped.yaxis.set_major_formatter(PercentFormatter())

    reach.plot(epochs, [h["gradient_reach"] for h in history], "o-", color="tab:brown")
    reach.set(title="Gradient reach (1% of the last step's gradient)", ylabel="steps back", xlabel="epoch")
    reach.set_ylim(0, 1.1 * max(h["gradient_reach"] for h in history) + 1)

    for ax in (loss, norm, clipped, reach):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    loss.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # shared: whole epochs even for a single one
    fig.suptitle(title, fontsize="large")
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Readers never see half a picture: draw to a temporary file, then rename it over `path`."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lower()[1:], dpi=120)
    return Path(path)
