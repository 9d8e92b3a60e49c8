"""What the CLI shows people on stderr: live training progress, summaries and metadata tables.

Only the CLI imports this module. On a terminal it draws with rich; anywhere else (cron, a pipe,
a CI log) it writes one plain line per event, with no colours or cursor tricks.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:  # the network is not needed to print a model's metadata (`info`)
    from streamcast.forecaster import Forecaster
    from streamcast.training import EpochStats

stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


class FitProgress:
    """Epoch-by-epoch training display: a live table on a terminal, log lines elsewhere."""

    def __init__(self, quiet: bool = False, epochs: int | None = None, members: int = 1) -> None:
        self.quiet = quiet
        self.live: Live | None = None
        self.rows: list[EpochStats] = []
        self.started = time.monotonic()
        self.epochs_total = epochs
        self.members = members  # 0: `fit --auto`, as many candidates as the budget allows
        self.budget: float | None = None

    def notes(self, notes) -> None:
        if not self.quiet:
            for note in notes:
                stderr.print(f"note: {note}", markup=False)

    def __enter__(self) -> FitProgress:
        self.started = time.monotonic()
        if not self.quiet and stderr.is_terminal:
            # A callable renderable: the clock in the caption keeps moving between epochs.
            self.live = Live(
                get_renderable=self._table, console=stderr, refresh_per_second=4, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def epoch(self, stats: EpochStats) -> None:
        self.rows.append(stats)
        if self.quiet:
            return
        if self.live is not None:
            self.live.refresh()
            return
        stderr.print(
            f"{self._member(stats)}epoch {stats.epoch} train_loss={_fmt(stats.train_loss)} val_loss={_fmt(stats.val_loss)} "
            f"grad_norm_median={_fmt(stats.grad_norm_median)} grad_norm_max={_fmt(stats.grad_norm_max)} "
            f"clipped={stats.clipped_share:.0%} skipped={stats.skipped_steps} reach={stats.gradient_reach} "
            f"lr={stats.lr:.3g} steps_per_s={stats.timesteps_per_second:,.0f} {stats.seconds:.1f}s"
            + (" *best" if stats.best else ""),
            markup=False,
            soft_wrap=True,
        )

    def _table(self) -> Table:
        table = Table(title="streamcast fit", title_justify="left", expand=False)
        for col in (
            "epoch",
            "train loss",
            "val loss",
            "grad norm p50",
            "grad norm max",
            "clipped",
            "skipped",
            "reach",
            "lr",
            "steps/s",
            "time",
        ):
            table.add_column(col, justify="right")
        for s in self.rows[-15:]:
            mark = " *" if s.best else ""
            table.add_row(
                f"{self._member(s)}{s.epoch}{mark}",
                _fmt(s.train_loss),
                _fmt(s.val_loss),
                _fmt(s.grad_norm_median, 3),
                _fmt(s.grad_norm_max, 3),
                f"{s.clipped_share:.0%}",
                str(s.skipped_steps),
                str(s.gradient_reach),
                f"{s.lr:.3g}",
                f"{s.timesteps_per_second:,.0f}",
                f"{s.seconds:.1f}s",
            )
        elapsed = time.monotonic() - self.started
        table.caption = (
            f"elapsed {elapsed:.0f}s{self._eta()} · * = best so far · Ctrl-C stops and keeps the best"
        )
        return table

    def _eta(self) -> str:
        """Time left if every epoch runs; early stopping may end sooner, hence "at most"."""
        if self.budget is not None:
            return f" · budget left {max(0.0, self.budget - (time.monotonic() - self.started)):.0f}s"
        if not self.rows or not self.epochs_total:
            return ""
        latest: dict[int, int] = {}
        for s in self.rows:
            latest[s.member] = s.epoch
        lefts = [self.epochs_total - latest.get(m, 0) for m in range(1, self.members + 1)]
        left = sum(lefts)
        mean = sum(s.seconds for s in self.rows) / len(self.rows)
        # k at a time: the work shared out, plus what the longest member may leave to run alone.
        k = _side_by_side(self.rows)
        bound = left / k + max(lefts) * (1 - 1 / k)
        return f" · ETA at most {bound * mean:.0f}s ({left} epochs left)" if left > 0 else ""

    def _member(self, stats: EpochStats) -> str:
        if self.members == 0:
            return f"candidate {stats.member} "
        return f"member {stats.member}/{self.members} " if self.members > 1 else ""

    def summary(self, forecaster: Forecaster, path: Path) -> None:
        if self.quiet:
            return
        info = forecaster.info
        health = info["gradient_health"]
        best = info["history"][info["best_epoch"] - 1]
        stopped = "interrupted, best kept" if info["interrupted"] else f"{len(info['history'])} epochs"
        first = "member 1: " if "members" in info else ""  # the history kept at the top is member 1's
        stderr.print(
            f"{first}best epoch {info['best_epoch']} ({stopped}): val_loss={_fmt(best['val_loss'])} "
            f"train_loss={_fmt(best['train_loss'])}",
            markup=False,
        )
        if averaged := _averaged(info):
            stderr.print(f"weights: {averaged}", markup=False)
        stderr.print(
            f"gradient health: norm p50={_fmt(health['grad_norm_median'], 3)} max={_fmt(health['grad_norm_max'], 3)} "
            f"clipped={health['clipped_share']:.0%} skipped={health['skipped_steps']} "
            f"reach={health['gradient_reach']} of bptt {info['fit_config']['bptt']} steps"
            + _reach_hint(health["gradient_reach"], info["fit_config"]),
            markup=False,
        )
        for i, tried in enumerate(info.get("auto", {}).get("tried", []), 1):
            chosen = " *chosen" if i in info["auto"]["chosen"] else ""
            stderr.print(
                f"tried {i}: {tried['cell']} hidden={tried['hidden_size']} ar={tried['ar']} lr={tried['lr']:g} "
                f"seed={tried['seed']}: val_loss={_fmt(tried['val_loss'])} ({tried['epochs']} epochs, "
                f"{tried['seconds']:.0f}s){chosen}",
                markup=False,
            )
        if "members" in info:
            stderr.print(
                f"ensemble of {len(info['members'])} members: val_loss={_fmt(info['ensemble_val_loss'])} "
                f"(members {', '.join(_fmt(m['val_loss']) for m in info['members'])})",
                markup=False,
            )
        if "segment_share" in info:
            stderr.print(f"mean: {_segment_share(info)} (fitted on the validation part)", markup=False)
        fallback = info.get("naive_fallback", {})
        if fallback.get("series") or fallback.get("blended"):
            others = info["data"]["series"] - fallback["series"] - fallback.get("blended", 0)
            stderr.print(
                f"fallback: {_fallback({'info': info, 'naive_share': forecaster.naive_share})}; "
                f"the network serves the other {others}",
                markup=False,
            )
        for line in _choices(forecaster):
            stderr.print(line, markup=False)
        if info.get("short_series"):
            stderr.print(f"short series: {_short(info['short_series'])}", markup=False)
        if info.get("intervals"):
            stderr.print(f"intervals: {_intervals({'info': info})}", markup=False)
        stderr.print(f"wrote {path}", markup=False)


def _choices(forecaster: Forecaster) -> list[str]:
    """What `fit` chose from the data where it was not told: the validation part's size (where
    it is over the horizon) and the transform for positive data; and a `--segment-stride`."""
    info, lines = forecaster.info, []
    if info.get("val_size_chosen") and info["val_size"] > info["fit_config"]["horizon"]:
        lines.append(
            f"validation: the last {info['val_size']} steps of each series, not trained on (sized for "
            "the series' number and lengths; --val-size to choose)"
        )
    if "transform_auto" in info:
        lines.append(f"transform: {forecaster.spec.transform} ({_level_spread(info['transform_auto'])})")
    if weights := _series_weight(info):
        lines.append(f"series weights: {weights}")
    if stride := _segment_stride(info, _cells(info, forecaster.net.config.cell)):
        lines.append(f"training: {stride}")
    return lines


def _series_weight(info: dict) -> str:
    """How each series' loss was weighted, where not equally (`--series-weight`)."""
    weight = info["fit_config"].get("series_weight", "equal")
    if weight == "mase":
        return "mase (each series' loss by 1 / its in-sample seasonal naive error; --series-weight)"
    if weight == "soft-mase":
        return (
            "soft-mase (each series' loss by the fourth root of 1 / its in-sample seasonal naive "
            "error: the default on logs; --series-weight equal to weigh them alike)"
        )
    return ""


def _segment_share(info: dict) -> str:
    share = info["segment_share"]["share"]
    return f"{share:.0%} to the segrnn members, {1 - share:.0%} to the others"


def _segment_stride(info: dict, cells: list[str]) -> str:
    """How the segrnn members were trained (`--segment-stride`); other cells train on every step."""
    if "segrnn" not in cells:
        return ""
    stride = info["fit_config"].get("segment_stride", 1)  # files before it: every step
    trained = (
        f"segrnn trained on {'every step' if stride == 1 else f'one step in {stride}'} (--segment-stride)"
    )
    return trained + _segment_batches(info)


def _segment_batches(info: dict) -> str:
    """Which segrnn members drew random windows (`--segment-batches`); files from before the option
    walked lanes."""
    if "members" not in info:
        random = info["fit_config"].get("segment_batches") == "random"
        return " on random windows (--segment-batches)" if random else ""
    segrnn = [(str(i), m.get("batches")) for i, m in enumerate(info["members"], 1) if m["cell"] == "segrnn"]
    drawn = [i for i, batches in segrnn if batches == "random"]
    if not drawn:
        return ""
    walked = [i for i, batches in segrnn if batches != "random"]
    lanes = f"member {', '.join(walked)} on lanes, " if walked else ""
    return f", {lanes}member {', '.join(drawn)} on random windows (--segment-batches)"


def _cells(info: dict, cell: str) -> list[str]:
    return [m["cell"] for m in info["members"]] if "members" in info else [cell]


def _reach_hint(reach: int, config: dict) -> str:
    """Only a plain RNN gets the gated-cell advice: an LSTM or GRU with a short reach on long
    chunks has simply learnt that the far past does not matter."""
    if config["cell"] in ("rnn", "rnn-relu") and reach < config["bptt"] // 4:
        return " (vanishing: try --cell lstm or gru, or a shorter --bptt)"
    return ""


def _side_by_side(rows: list[EpochStats]) -> int:
    """How many members train at once (`fit --jobs`), seen from their epochs: the most members
    whose runs of epochs overlap, one where they came one after another."""
    spans: dict[int, list[int]] = {}
    for i, s in enumerate(rows):
        spans.setdefault(s.member, [i, i])[1] = i
    return max(sum(a <= i <= b for a, b in spans.values()) for i in range(len(rows)))


def _trained_on(info: dict) -> str:
    """`cuda:0 (NVIDIA H100), 4 processes`; files from before devices were recorded: `-`."""
    if "device" not in info:
        return "-"
    world, jobs = info.get("world_size", 1), info.get("jobs", 1)
    if world > 1:
        return info["device"] + f", {world} processes (torchrun)"
    return info["device"] + (
        f", members {jobs} at a time in their own processes" if jobs > 1 else ", 1 process"
    )


def _short(short: dict) -> str:
    """`2 series shorter than 50 points (e.g. 'new7') were left out of training; served naive`."""
    served = "served naive" if short["served"] == "naive" else "the network serves them as new series"
    if short.get("last_value"):
        served += f" (the last value for {short['last_value']})"
    return (
        f"{short['series']} series shorter than {short['needed']} points (e.g. {short['example']!r}) "
        f"were left out of training; {served}"
    )


def _fallback(meta: dict) -> str:
    """`naive for 23 of 414 series (validation error over 1.5x the better of ...)`; older files: `-`."""
    chosen = meta["info"].get("naive_fallback")
    if chosen is None:
        return "-"
    if not chosen["ratio"]:
        return "off"
    if "skipped" in chosen:
        return f"off: {chosen['skipped']}"
    series = meta["info"].get("data", {}).get("series", "?")
    to = chosen.get("to", "seasonal")
    yardstick = {
        "best": "the better of seasonal naive's and the last value's",
        "last": "the last value's; the --ar window is shorter than a season",
    }.get(to, "seasonal naive's")
    text = (
        f"{'seasonal naive' if to == 'seasonal' else 'naive'} for {chosen['series']} of {series} series "
        f"(validation error over {chosen['ratio']:g}x {yardstick})"
    )
    if chosen.get("blended"):
        how = f"over {chosen['blend_from']:g}x"
        if chosen.get("share") == "fitted":
            how += ", or where a blend did better on the validation part"
        shares = sorted((meta.get("naive_share") or {}).values())
        if shares:  # how far the blends move: a user reads 0.02-0.11 otherwise than 0.5-0.9
            how += f"; share {shares[0]:.2g}" + (f"-{shares[-1]:.2g}" if len(shares) > 1 else "")
        text += f", blended with it for {chosen['blended']} more ({how})"
    if chosen.get("last_value"):
        text += f"; the last value for {chosen['last_value']} of them"
    return text


def _transform(spec: dict, info: dict) -> str:
    """`log`, `none`, or `none, floor=0` for data that never went below zero, and the scaling;
    with why `auto` chose the transform for positive data."""
    transform = spec.get("transform", "none")
    text = transform if spec.get("floor") is None else f"{transform}, floor={spec['floor']:g}"
    text += f", scaling={spec.get('scaling', 'mean')}"
    return text + (f" ({_level_spread(info['transform_auto'])})" if "transform_auto" in info else "")


def _level_spread(auto: dict) -> str:
    """Why `--transform auto` took or left logs for positive data (`streamcast.levelspread`)."""
    if auto["lambda"] is None:
        return "auto: no series holds two whole seasons to test the spread against the level; logs, as every value is positive"
    grows = "grows" if auto["lambda"] < auto["log_below"] else "does not grow"
    return f"auto: the spread {grows} with the level, median Box-Cox lambda {auto['lambda']:.2f} by Guerrero's method"


def _intervals(meta: dict) -> str:
    """`10%-90%, calibrated on the validation part`, why there is none, or `-` (older files and
    quantile models, whose quantiles are their own)."""
    asked = meta["info"].get("intervals")
    if not asked:
        return "-"
    levels = "-".join(f"{q:.0%}" for q in asked["levels"])
    if "skipped" in asked:
        return f"none ({levels} asked: {asked['skipped']})"
    widen = asked.get("widen", 1.0)  # files from before --interval-widen: as measured
    widened = f", widened {widen:g}x" if widen != 1.0 else ""
    return f"{levels} around the point forecast, calibrated on the validation part{widened}"


def _quantiles(cfg: dict, meta: dict) -> str:
    """The quantiles served: the network's own, or those of the calibrated interval."""
    if cfg["quantiles"]:
        return ",".join(map(str, cfg["quantiles"]))
    interval = meta.get("intervals")
    if interval:
        return ",".join(map(str, sorted({*interval["levels"], 0.5}))) + " (the calibrated interval's)"
    return "-"


def print_info(meta: dict, path: str) -> None:
    """A model file's metadata as readable tables."""
    info = meta["info"]
    cfg = meta["model_config"]
    of_member = " (member 1)" if "members" in info else ""  # an ensemble keeps member 1's history
    table = Table(title=str(path), title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        (
            "cell",
            f"{cfg['cell']} hidden={cfg['hidden_size']} layers={cfg['num_layers']} conv={cfg['conv']}",
        ),
        ("horizon", str(cfg["horizon"])),
        (
            "head",
            f"window={cfg.get('ar', 0)}"
            + (f" (the network reads {cfg['net_window']})" if cfg.get("net_window") else "")
            + f" scale={cfg.get('head_scale', 'global')}"
            f" lags={cfg.get('lag_inputs', 'none')} start={cfg.get('ar_start', 'naive')}",
        ),
        ("transform", _transform(meta["feature_spec"], info)),
        ("fallback", _fallback(meta)),
        *([("short series", _short(info["short_series"]))] if info.get("short_series") else []),
        ("intervals", _intervals(meta)),
        ("quantiles", _quantiles(cfg, meta)),
        (
            "inputs",
            ", ".join(
                meta["feature_spec"]["calendar"]
                and [
                    "value",
                    *meta["feature_spec"]["calendar"],
                    *meta["feature_spec"]["covariates"],
                ]
                or ["value"]
            ),
        ),
        *_known_row(meta["feature_spec"]),
        ("frequency", meta["feature_spec"]["freq"] + _zone(info)),
        ("columns", ", ".join(f"{k}={v}" for k, v in meta["columns"].items() if v)),
        (
            "data",
            f"{info['data']['source']} ({info['data']['series']} series, {info['data']['rows']:,} rows)",
        ),
        ("fingerprint", str(info["data"].get("fingerprint") or "-")),
        ("trained on", _trained_on(info)),
        *(
            [("validation", f"the last {info['val_size']} steps of each series")]
            if "val_size" in info
            else []
        ),
        (
            "best epoch" + of_member,
            f"{info['best_epoch']} of {len(info['history'])}"
            + (" (interrupted)" if info["interrupted"] else ""),
        ),
    ]
    best = info["history"][info["best_epoch"] - 1]
    loss = "pinball" if cfg.get("quantiles") else info["fit_config"]["loss"]  # quantiles train on pinball
    weight = info["fit_config"].get("series_weight", "equal")
    rows.append(
        (
            "val loss" + of_member,
            f"{_fmt(best['val_loss'])} ({loss}, scaled"
            + (f", series weighted {weight}" if weight != "equal" else "")
            + ")",
        )
    )
    if averaged := _averaged(info):
        rows.append(("weights", averaged))
    if "members" in info:
        cells = ", ".join(m["cell"] for m in info["members"])
        combine = meta.get("ensemble_combine", "median")
        if "segment_share" in info:
            combine = f"mean ({_segment_share(info)})"
        rows.append(
            (
                "ensemble",
                f"{len(info['members'])} members ({cells}), their {combine}"
                f" served, val loss {_fmt(info['ensemble_val_loss'])}",
            )
        )
    if stride := _segment_stride(info, _cells(info, cfg["cell"])):
        rows.append(("training", stride))
    health = info["gradient_health"]
    rows.append(
        (
            "gradient health",
            f"norm p50={_fmt(health['grad_norm_median'], 3)} max={_fmt(health['grad_norm_max'], 3)} clipped={health['clipped_share']:.0%} skipped={health['skipped_steps']} reach={health['gradient_reach']}",
        )
    )
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in meta["versions"].items())))
    for key, value in rows:
        table.add_row(key, value)
    Console(highlight=False).print(table)


def _averaged(info: dict) -> str:
    """Whose weights are the mean of their best epochs' (`fit --average-epochs`); empty where
    none are, or for a file from before the option."""
    if "members" in info:
        members = info["members"]
        count = sum(bool(m.get("averaged")) for m in members)
        if not count:
            return ""
        return f"the mean of the best epochs in {count} of {len(members)} members (--average-epochs)"
    if not info.get("averaged"):
        return ""
    epochs = ", ".join(str(e) for e in info["averaged"])
    return f"the mean of epochs {epochs}, val_loss={_fmt(info['averaged_val_loss'])} (--average-epochs)"


_METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "smape": "sMAPE %", "mase": "MASE", "pinball": "pinball"}


def print_backtest(result, title: str, console: Console | None = None) -> None:
    """A backtest's tables on a terminal: overall against both baselines, per step, per series."""
    console = console or Console(highlight=False)
    console.print(f"[bold]{title}[/bold]")
    console.print(
        f"{result.series} series × {result.windows} origins, {result.stride} steps apart · "
        f"horizon {result.horizon} · season {result.season} · {result.points:,} points per method",
        markup=False,
    )
    overall = Table(title="overall", title_justify="left")
    for col in ("metric", "model", "naive", "seasonal naive", "gain vs naive", "gain vs seasonal naive"):
        overall.add_column(col, justify="left" if col == "metric" else "right")
    for row in result.overall.iter_rows(named=True):
        overall.add_row(
            _metric_label(row["metric"], result.interval),
            _fmt(row["model"]),
            _fmt(row["naive"]),
            _fmt(row["seasonal_naive"]),
            _gain(row["gain_naive"]),
            _gain(row["gain_seasonal_naive"]),
        )
    overall.caption = "gain = 1 − model / baseline: +20% is 20% less error than the baseline"
    console.print(overall)
    console.print(_breakdown(result.per_step, "step", "per horizon step"))
    if result.per_series is not None:
        console.print(_breakdown(result.per_series, "series_id", "per series"))


def _breakdown(table, key: str, title: str) -> Table:
    """One row per step (or series): the model's metrics, then its MASE gain over each baseline."""
    metrics = table["metric"].unique(maintain_order=True).to_list()
    # Light borders: with quantile metrics nine columns must still fit an 80-column terminal.
    out = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    out.add_column("step" if key == "step" else "series")
    for metric in metrics:
        out.add_column(_METRIC_LABELS.get(metric, metric), justify="right")
    out.add_column("MASE gain vs naive", justify="right")
    out.add_column("vs seasonal naive", justify="right")
    for _, rows in table.group_by(key, maintain_order=True):
        by_metric = {r["metric"]: r for r in rows.iter_rows(named=True)}
        mase = by_metric["mase"]
        out.add_row(
            str(rows[key][0]),
            *(_fmt(by_metric[m]["model"]) for m in metrics),
            _gain(mase["gain_naive"]),
            _gain(mase["gain_seasonal_naive"]),
        )
    return out


def _metric_label(metric: str, interval) -> str:
    if metric == "coverage":
        lo, hi = interval
        return f"coverage q{lo:g}–q{hi:g} (nominal {hi - lo:.0%})"
    return _METRIC_LABELS[metric]


def _gain(x: float | None) -> str:
    if x is None:
        return "-"
    colour = "green" if x > 0 else "red"
    return f"[{colour}]{x:+.1%}[/{colour}]"


def _zone(info: dict) -> str:
    """The time zone the model was trained in, where one was recorded."""
    zone = info.get("data", {}).get("time_zone")
    return f" in {zone}" if zone else ""


def _known_row(spec: dict) -> list[tuple[str, str]]:
    """The inputs known in advance, if the model has any (issue 14)."""
    names = [
        *spec.get("future_covariates", []),
        *([f"holidays {spec['holidays']}"] if spec.get("holidays") else []),
    ]
    rows = []
    if names:
        rows.append(("known ahead", f"{', '.join(names)} (next {spec['future_steps']} steps at each step)"))
    if spec.get("static"):
        rows.append(("static", ", ".join(spec["static"]) + " (one value per series)"))
    return rows
