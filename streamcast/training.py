"""`fit`: stateful truncated-BPTT training, in one loop you can hold in your head.

Each lane of a series is walked in consecutive chunks of `bptt` steps; the hidden state is carried
from chunk to chunk and detached at the boundary (as in PyTorch's word_language_model), which is
exactly how `stream` later carries it tick after tick.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from streamcast.averaging import AVERAGE_EPOCHS, BestEpochs
from streamcast.cellshare import segment_share, share_weights
from streamcast.dataparallel import (
    GlobalLanes,
    agree_feature_spec,
    agree_floor,
    agree_freq,
    agree_median,
    agree_transform,
    check_holds_series,
    gather_scaler,
    global_lanes,
)
from streamcast.devices import device_name, resolve_device
from streamcast.distributed import Cluster
from streamcast.errors import DataError, Interrupted, UsageError
from streamcast.fallback import (
    BLEND_FROM,
    FALLBACK_TO,
    NAIVE_FALLBACK,
    NAIVE_SHARES,
    badly_served,
    fitted_shares,
    naive_at,
    served_point,
    toward_naive,
)
from streamcast.features import (
    SCALINGS,
    TRANSFORMS,
    FeatureSpec,
    Scaler,
    bounds_alone,
    build_inputs,
    choose_floor,
    choose_transform,
    default_horizon,
    fit_feature_spec,
    fit_scaler,
    is_yearly,
    nonnegative_series,
    resolve_scaling,
    season_length,
    series_offsets,
    short_series_window,
    window_length,
)
from streamcast.forecaster import Forecaster
from streamcast.health import GradientHealth, gradient_reach
from streamcast.highway import AR_STARTS, choose_start, highway_windows, network_window
from streamcast.intervals import INTERVALS, MIN_CHANGES, WIDEN, Intervals, calibrate, units_at
from streamcast.known import holiday_calendar
from streamcast.lanes import (
    Lanes,
    effective_batch_size,
    lane_length_for,
    lanes_per_series,
    loss_chunks,
    make_lanes,
)
from streamcast.levelspread import LOG_BELOW, logs_suit, series_lambdas
from streamcast.losses import (
    LOSS_CHOICES,
    SERIES_WEIGHT_CHOICES,
    SERIES_WEIGHT_POWERS,
    choose_loss,
    choose_series_weight,
    forecast_loss,
    loss_terms,
)
from streamcast.memberjobs import NoRoom, resolve_jobs, train_in_processes, work_bytes
from streamcast.model import (
    CELLS,
    COMBINES,
    HEAD_SCALES,
    LAG_INPUTS,
    EnsembleForecaster,
    ModelConfig,
    RecurrentForecaster,
    detach_state,
)
from streamcast.netconfig import segment_length
from streamcast.reading import SeriesFrame
from streamcast.shortseries import LeftOut, needed_points, serve_short, split_short
from streamcast.stepping import run_series
from streamcast.threads import torch_threads
from streamcast.valsize import default_val_size
from streamcast.windowbatches import (
    SEGMENT_BATCHES,
    epoch_draw,
    global_steps,
    loss_steps,
    member_batches,
    mine,
    window_forecasts,
    windows_at,
    windows_per_batch,
)
from streamcast.zones import zone_of

CPU = torch.device("cpu")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("plateau", "cosine", "warmup-cosine", "none")

log = logging.getLogger(__name__)  # progress for library users: logging.basicConfig(level=logging.INFO)


# Epochs without a better validation loss before a member stops. 10, SegRNN's own: at 5 a segrnn
# member whose jumpy validation curve stalled early stopped by its 7th-11th epoch, where others
# bettered to the 30th (ETTh1's seven columns 0.6386 -> 0.6318 over seeds 0-2; README).
PATIENCE = 10
LAG_CHOICES = ("auto", *LAG_INPUTS)  # --lag-inputs: auto is resolved by `choose_lag_inputs`
BATCHES_MESSAGE = f"--segment-batches must be one of {', '.join(SEGMENT_BATCHES)}"


@dataclass(frozen=True)
class FitConfig:
    """Every `fit` option; the CLI flags mirror these fields one to one."""

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    conv: int = 0
    ar: int | None = None
    horizon: int | None = None  # None: by the data's frequency, as the CLI (features.default_horizon)
    quantiles: tuple[float, ...] = ()
    intervals: tuple[float, ...] = INTERVALS  # levels calibrated around a point model (intervals.py)
    interval_widen: float = WIDEN  # the calibrated offsets times this (intervals.WIDEN says why)
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()  # known in advance: the network sees the next `horizon` values
    holidays: str = ""  # a country code (e.g. "DE"): holiday flags of the next `horizon` steps
    static: tuple[str, ...] = ()  # one value per series (region, size): one-hot or scaled inputs
    bptt: int = 48
    segment_stride: int = 4  # a segrnn member trains on every Nth step (`_scored_forward`)
    segment_batches: str = "mixed"  # segrnn members' batches: lanes or random windows (windowbatches)
    batch_size: int = 32
    epochs: int = 30
    lr: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    clip: float = 1.0
    clip_value: float = 0.0
    loss: str = "auto"  # mae on logs, mse otherwise (streamcast.losses.choose_loss)
    scaling: str = "auto"  # "spread" for data in its own units, "mean" in logs (resolve_scaling)
    head_scale: str = "auto"
    lag_inputs: str = "auto"
    ar_start: str = "auto"
    naive_fallback: float = NAIVE_FALLBACK  # 0 = off; streamcast.fallback
    fallback_to: str = "best"  # seasonal naive, or the last value where it did better (FALLBACK_TO)
    naive_share: str = "fitted"  # the ratio's ramp, or fitted shares where larger (NAIVE_SHARES)
    transform: str = "auto"
    series_weight: str = "auto"  # soft-mase in logs, equal otherwise (losses.choose_series_weight)
    val_size: int | None = None
    patience: int = PATIENCE
    average_epochs: int = AVERAGE_EPOCHS  # a member's weights: the mean of its best K epochs' (averaging.py)
    seed: int = 0
    ensemble: int = 3  # members; 3 cut M4's sMAPE by 3% and MASE by 10% against one, over 3 seeds
    ensemble_cells: tuple[str, ...] = ()
    ensemble_combine: str = "mean"  # how members' forecasts become one (streamcast.model.COMBINES)

    def __post_init__(self) -> None:
        checks = [
            (self.cell in CELLS, f"--cell must be one of {', '.join(CELLS)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}"),
            (self.loss in LOSS_CHOICES, f"--loss must be one of {', '.join(LOSS_CHOICES)}"),
            (self.scaling in SCALINGS, f"--scaling must be one of {', '.join(SCALINGS)}"),
            (self.lag_inputs in LAG_CHOICES, f"--lag-inputs must be one of {', '.join(LAG_CHOICES)}"),
            (self.ar_start in AR_STARTS, f"--ar-start must be one of {', '.join(AR_STARTS)}"),
            (
                self.naive_fallback == 0 or 1 <= self.naive_fallback < math.inf,
                "--naive-fallback must be 0 (off) or a ratio of at least 1, e.g. 2",
            ),
            (self.fallback_to in FALLBACK_TO, f"--fallback-to must be one of {', '.join(FALLBACK_TO)}"),
            (self.naive_share in NAIVE_SHARES, f"--naive-share must be one of {', '.join(NAIVE_SHARES)}"),
            (
                self.head_scale in ("auto", *HEAD_SCALES),
                f"--head-scale must be one of auto, {', '.join(HEAD_SCALES)}",
            ),
            (self.transform in TRANSFORMS, f"--transform must be one of {', '.join(TRANSFORMS)}"),
            (
                self.series_weight in SERIES_WEIGHT_CHOICES,
                f"--series-weight must be one of {', '.join(SERIES_WEIGHT_CHOICES)}",
            ),
            (
                self.horizon is None or 1 <= self.horizon <= 100_000,
                "--horizon must be between 1 and 100,000 steps",
            ),
            (
                self.hidden_size <= 1 << 16 and self.num_layers <= 64,
                "--hidden must be at most 65,536 and --layers at most 64 (what a model file may hold)",
            ),
            (self.bptt >= 1 and self.segment_stride >= 1, "--bptt and --segment-stride must be at least 1"),
            (self.segment_batches in SEGMENT_BATCHES, BATCHES_MESSAGE),
            (self.hidden_size >= 1 and self.num_layers >= 1, "--hidden and --layers must be at least 1"),
            (self.batch_size >= 1 and self.epochs >= 1, "--batch-size and --epochs must be at least 1"),
            (0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)"),
            (0 < self.lr < math.inf, "--lr must be a positive number"),
            (0 <= self.weight_decay < math.inf, "--weight-decay must be >= 0"),
            (self.patience >= 1, "--patience must be at least 1 epoch"),
            (self.average_epochs >= 1, "--average-epochs must be at least 1 (1: the best epoch alone)"),
            (0 <= self.seed < 2**32, "--seed must be between 0 and 2**32 - 1"),
            (1 <= self.ensemble <= 64, "--ensemble must be between 1 and 64 members"),
            (self.ensemble_combine in COMBINES, f"--ensemble-combine must be one of {', '.join(COMBINES)}"),
            (
                all(c in CELLS for c in self.ensemble_cells),
                f"--ensemble-cells must name cells among {', '.join(CELLS)}",
            ),
            (
                self.ar != 0 or "segrnn" not in (self.cell, *self.ensemble_cells),
                "a segrnn cell reads the --ar window in segments: give --ar 2 or more, not 0",
            ),
            (len(set(self.covariates)) == len(self.covariates), "each --covariate may be given once"),
            (
                len(set(self.future_covariates)) == len(self.future_covariates),
                "each --future-covariate may be given once",
            ),
            (self.clip >= 0 and self.clip_value >= 0, "--clip and --clip-value must be >= 0 (0 = off)"),
            (
                all(0 < q < 1 for q in self.quantiles),
                "--quantiles must lie strictly between 0 and 1",
            ),
            (
                all(0 < q < 1 and q != 0.5 for q in self.intervals),
                "--intervals levels must lie strictly between 0 and 1, other than 0.5 (the point forecast)",
            ),
            (
                len(set(self.intervals)) == len(self.intervals),
                "each --intervals level may be given once",
            ),
            (
                0 < self.interval_widen < math.inf,
                "--interval-widen must be a factor above 0 (1 = the validation errors' own quantiles)",
            ),
            (self.conv == 0 or self.conv >= 2, "--conv must be 0 (off) or a kernel size of at least 2"),
            (
                self.conv == 0 or set((self.ensemble_cells or (self.cell,))[: self.ensemble]) != {"segrnn"},
                "a segrnn cell reads its window in segments and takes no --conv: drop --conv, or add another cell",
            ),
            (self.ar is None or self.ar >= 0, "--ar must be >= 0 (0 = off)"),
            (
                self.val_size is None or self.horizon is None or self.val_size >= self.horizon,
                f"--val-size must be >= --horizon ({self.val_size} < {self.horizon})",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.holidays:
            holiday_calendar(self.holidays)  # an unknown country, or no holidays package: say so now

    @property
    def model_quantiles(self) -> tuple[float, ...]:
        """Quantiles as the network emits them, the median always among them (the point forecast)."""
        if not self.quantiles:
            return ()
        return tuple(sorted(set(self.quantiles) | {0.5}))

    def resolved_val_size(self) -> int:
        return self.val_size if self.val_size is not None else self.horizon

    def for_data(self, freq: str) -> FitConfig:
        """The config with the horizon the data's frequency suggests where none was given."""
        return self if self.horizon is not None else replace(self, horizon=default_horizon(freq)[0])

    def for_lengths(self, data: SeriesFrame, cluster: Cluster | None = None) -> FitConfig:
        """The config with the validation part the series' number and lengths suggest where none
        was given (`streamcast.valsize`); after `for_data`, which sets the horizon."""
        if self.val_size is not None:
            return self
        lengths = np.diff(series_offsets(data.frame)[1])
        return replace(self, val_size=default_val_size(lengths, self.horizon, cluster))


@dataclass
class EpochStats:
    """One line of the training log, shown live and stored in the model."""

    epoch: int
    train_loss: float
    val_loss: float
    grad_norm_median: float
    grad_norm_max: float
    clipped_share: float
    skipped_steps: int
    gradient_reach: int
    lr: float
    seconds: float
    timesteps_per_second: float
    best: bool = False
    member: int = 1  # which ensemble member this epoch trained (1 for a single model)


@dataclass
class FitResult:
    """What happened in training, for the progress display and the model's metadata."""

    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    averaged: tuple[int, ...] = ()  # the epochs whose mean weights were kept (`--average-epochs`)
    averaged_val_loss: float | None = None

    @property
    def best_val_loss(self) -> float:
        """The validation loss of the weights kept: the best epoch's, or its mean with the next
        best epochs' where that scored better."""
        if self.averaged_val_loss is not None:
            return self.averaged_val_loss
        return self.history[self.best_epoch - 1].val_loss


def fit(
    data: SeriesFrame,
    config: FitConfig = FitConfig(),
    on_epoch: Callable[[EpochStats], None] | None = None,
    *,
    threads: int | None = None,
    device: str | torch.device = "auto",
    cluster: Cluster | None = None,
    jobs: int | str = 1,
) -> Forecaster:
    """Train a forecaster on every series of `data`; the last `val_size` steps of each validate.

    Ctrl-C stops training after the current step and keeps the best weights seen so far. `threads`:
    torch threads for the run (default: `streamcast.threads.default_threads()`, one). `device`:
    as `--device` (`auto`: a CUDA GPU when torch sees one). Under torchrun, `cluster`
    (`streamcast.distributed.joined`) with `data` this rank's share of the series trains one model
    with the other ranks (see `streamcast.torchrun.fit_parallel`). `jobs`: how many members of an
    ensemble train at once, each in its own process ("auto": the cores other work leaves free); the
    weights are the same for any count (`streamcast.memberjobs`; a script needs the
    `if __name__ == "__main__":` guard for more than one).
    """
    device = cluster.device if cluster is not None else resolve_device(str(device))

    def train(data: SeriesFrame, config: FitConfig, left_out: LeftOut | None) -> Forecaster:
        # The seed makes the model reproducible without resetting the caller's own torch generator.
        with torch_threads(threads) as count, torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _fit(data, config, on_epoch, cluster, device, jobs, count, left_out)

    return around_training(data, config, train, cluster)


def around_training(
    data: SeriesFrame,
    config: FitConfig,
    train: Callable[[SeriesFrame, FitConfig, LeftOut | None], Forecaster],
    cluster: Cluster | None = None,
) -> Forecaster:
    """What `fit` and `fit_auto` do around `train`: the horizon and validation part the data
    suggests where none was given, series too short to train left out and served naive (in one
    process; under torchrun every series must train), and whether the validation part was chosen
    (`fit` then says how long it is)."""
    chosen = config.val_size is None
    config = config.for_data(data.freq).for_lengths(data, cluster)
    left_out = None
    if cluster is None:
        data, left_out = split_short(data, config.horizon, config.resolved_val_size())
    forecaster = serve_short(train(data, config, left_out), left_out, config.naive_fallback, config.transform)
    if chosen:
        forecaster.info["val_size_chosen"] = True
    return forecaster


def _fit(
    data: SeriesFrame,
    config: FitConfig,
    on_epoch: Callable[[EpochStats], None] | None,
    cluster: Cluster | None = None,
    device: torch.device = CPU,
    jobs: int | str = 1,
    threads: int = 1,
    left_out: LeftOut | None = None,
) -> Forecaster:
    """`fit` under its own seed: covariates read with the data are used unless the config names others."""
    prepared = prepare(data, config, cluster, device, left_out)
    jobs = member_jobs(jobs, config.ensemble, threads, prepared)
    log.info("fitting %d series at %s, %d member(s)", len(data.series_ids), data.freq, config.ensemble)
    if jobs > 1:
        log.info("training %d members at a time, each in its own process", jobs)
    cells = member_cells(config, prepared.spec, prepared.model_config)
    cells = [cells[m % len(cells)] for m in range(config.ensemble)]
    batches = member_batches(config.segment_batches, cells)
    plans = [
        MemberPlan(
            member_config(prepared.model_config, cells[m], prepared.config.conv),
            # with what `prepare` resolved from the data (`--loss auto`) and the member's batches
            replace(prepared.config, segment_batches=batches[m]),
            member_seed(config.seed, m),
        )
        for m in range(config.ensemble)
    ]
    trained, jobs = train_members(plans, prepared.work, on_epoch, jobs=jobs)
    return assemble(prepared, trained, jobs)


def member_cells(config: FitConfig, spec: FeatureSpec, model: ModelConfig) -> tuple[str, ...]:
    """The cells the members take in turn: `--ensemble-cells`, or by default `--cell` and two
    segrnn members of every three where the data stays in its own units and the network reads
    nothing but the series' own values and calendar; every member segrnn for yearly data.

    Mixed so, the members' errors differ more than those of one kind, and their mean gains: on
    ETTh1's seven columns (validation part, seed 0) one LSTM and two segrnn members scored MSE
    0.6415 where three LSTMs scored 0.6689 and one segrnn member in three 0.6526. Data in logs
    (M4 Hourly) keeps `--cell` alone (README, the levers table). A segrnn member reads only the
    window: covariates, inputs known ahead and static features would be lost on it.

    Yearly series are short and trend, with no season to carry: an LSTM, which reads each
    value against its series' mean, carried a trend back toward that mean once the values had
    left the range it trained on (146 yearly US employment series, 6 years held out: sMAPE 13.2
    for the default mix, 12.2 for three LSTMs, 7.6 for the last value, 6.3 for three segrnn
    members, which read the window relative to its newest value; README, Yearly data).
    """
    if config.ensemble_cells:
        return config.ensemble_cells
    reads_more = spec.covariates or spec.future_steps or spec.static
    if config.ensemble == 1 or reads_more or model.ar < 2:
        return (config.cell,)
    if is_yearly(spec.freq):
        return ("segrnn",)
    if spec.transform == "log":
        return (config.cell,)
    return (config.cell, "segrnn", "segrnn")


def member_config(model: ModelConfig, cell: str, conv: int) -> ModelConfig:
    """A member's shape: a segrnn member reads the window in segments of about a season, and
    takes no `conv` (the `--conv` asked for, which a segrnn base had to drop)."""
    conv = 0 if cell == "segrnn" else conv
    return replace(model, cell=cell, conv=conv, segment=segment_length(cell, model.ar, model.season))


@dataclass(frozen=True)
class MemberPlan:
    """One network to train: its shape, the options it trains with, and its seed."""

    model: ModelConfig
    config: FitConfig
    seed: int


@dataclass
class Prepared:
    """Everything members share: scaled inputs, lanes, validation targets, and what the file records."""

    data: SeriesFrame
    config: FitConfig
    spec: FeatureSpec
    scaler: Scaler
    model_config: ModelConfig
    work: _Work
    series: int
    rows: int
    val_size: int
    lane_length: int
    floor_series: frozenset[str] = frozenset()  # bounded at 0 on their own (`_floored`)
    level_spread: dict | None = None  # what `--transform auto`'s test found (levelspread), for info


def choose_head_scale(requested: str, transform: str) -> str:
    """`--head-scale auto`: window for log-transformed data, global otherwise.

    In logs every series has the scale 1, so a smooth series' moves are tiny in the head's units
    and its corrections drown in the head's noise; measured in its window's own spread they are
    not. Chosen on validation parts over 3 seeds (one network each): on M4 Hourly (log) window cut
    sMAPE 10.38 -> 10.02 and MASE 1.083 -> 0.968; on ETTh1 OT (no log) it raised MSE 0.151 -> 0.194
    (ETTm1 OT: 0.0643 -> 0.0618, one seed).
    """
    if requested != "auto":
        return requested
    return "window" if transform == "log" else "global"


def choose_lag_inputs(requested: str, transform: str) -> str:
    """`--lag-inputs auto`: smoothed for log-transformed data, season otherwise.

    Chosen on validation parts (three networks a fit, `bench_levers.py`): on M4 Hourly (logs) the
    smoothed level and seasonal profile beside the plain lags cut sMAPE 9.884 -> 9.757 and MASE
    0.8687 -> 0.8413 over 5 seeds, better on four; on ETT (its own units) they moved the four tasks
    by -0.2% to +1.9% over 3 seeds (ETTm1's seven columns 0.3595 -> 0.3665), so plain lags stay there.
    """
    if requested != "auto":
        return requested
    return "smoothed" if transform == "log" else "season"


def prepare(
    data: SeriesFrame,
    config: FitConfig,
    cluster: Cluster | None = None,
    device: torch.device = CPU,
    left_out: LeftOut | None = None,
) -> Prepared:
    """Scale the data and lay out lanes and validation once, for every member to train on.

    Under a `cluster`, `data` is this rank's share, and what spans all series is agreed with the
    other ranks (`streamcast.dataparallel`). `left_out`: series too short to train on, whose values
    count in the choices made for all the data (the log transform, the bound at 0)."""
    if not config.covariates and data.columns.covariates:
        config = replace(config, covariates=tuple(data.columns.covariates))  # read with the data
    if not config.future_covariates and data.columns.future_covariates:
        config = replace(config, future_covariates=tuple(data.columns.future_covariates))
    if not config.static and data.columns.static:
        config = replace(config, static=tuple(data.columns.static))
    if config.static and (data.static is None or not set(config.static) <= set(data.static.columns)):
        raise UsageError("static columns are not in the data; read them with read_series(..., static=[...])")
    frame = data.frame
    ids, offsets = series_offsets(frame)
    lengths = np.diff(offsets)
    val_size = config.resolved_val_size()
    if cluster is not None:
        check_holds_series(cluster, len(ids))
        agree_freq(cluster, data.freq)
    with _together(cluster):  # a rank that fails a check stops them all, none waits for it
        _check_lengths(ids, lengths, config.horizon, val_size)
        missing = [c for c in config.covariates if c not in frame.columns]
        if missing:
            raise UsageError(
                f"covariate {missing[0]!r} is not in the data; read it with read_series(..., covariates=[...])"
            )
    train_lengths = lengths - val_size
    season = season_length(data.freq)

    missing = [c for c in config.future_covariates if c not in frame.columns]
    if missing:
        raise UsageError(
            f"future covariate {missing[0]!r} is not in the data; "
            "read it with read_series(..., future_covariates=[...])"
        )
    train_rows = _training_rows(offsets, train_lengths)
    raw = frame["value"].to_numpy()
    covariates, train_frame = tuple(config.covariates), frame.filter(pl.Series(train_rows))

    def with_left_out(values: np.ndarray) -> np.ndarray:  # no copy of the data without them
        return values if left_out is None else np.concatenate([values, left_out.values()])

    if cluster is None:
        transform = choose_transform(with_left_out(raw[train_rows]), config.transform)
        transform, level_spread = _level_spread(
            transform, config.transform, raw, offsets, train_lengths, season
        )
        if left_out is not None:
            left_out.check(transform)
        spec = fit_feature_spec(
            train_frame,
            data.freq,
            covariates,
            resolve_scaling(config.scaling, transform),
            transform,
            future_covariates=tuple(config.future_covariates),
            holidays=config.holidays,
            horizon=config.horizon,
            static=data.static.select("series_id", *config.static) if config.static else None,
        )
        # The bound looks at the validation part too: it is the newest data, served from next.
        spec = replace(spec, floor=choose_floor(with_left_out(raw), config.transform, transform))
    else:
        if config.future_covariates or config.holidays or config.static:
            raise UsageError(
                "--future-covariate, --holidays and --static are not yet trained under torchrun: "
                "fit without torchrun"
            )
        transform = agree_transform(cluster, raw[train_rows], config.transform)
        transform, level_spread = _level_spread(
            transform, config.transform, raw, offsets, train_lengths, season, cluster
        )
        spec = agree_feature_spec(
            cluster, train_frame, data.freq, covariates, resolve_scaling(config.scaling, transform), transform
        )
        spec = replace(spec, floor=agree_floor(cluster, raw, config.transform, transform))
    floor_series = _floored(raw, offsets, ids, spec, config.transform, cluster)
    config = replace(
        config,
        loss=choose_loss(config.loss, transform, config.quantiles),
        scaling=spec.scaling,
        lag_inputs=choose_lag_inputs(config.lag_inputs, transform),
        series_weight=choose_series_weight(config.series_weight, transform),
    )  # as the file records
    static_values = _static_values(data, config.static)
    with _together(cluster):
        scaler = fit_scaler(raw, offsets, ids, train_lengths, spec.scaling, transform)
        inputs = build_inputs(frame, spec, scaler, static=static_values or None)

    ar = window_length(data.freq) if config.ar is None else config.ar
    if config.ar is None:  # every rank the same window, from the median length of every series
        median = (
            float(np.median(lengths)) if cluster is None else agree_median(cluster, lengths.astype(float))
        )
        ar = short_series_window(ar, season, data.freq, median)
    model_config = ModelConfig(
        input_size=spec.input_size,
        cell=config.cell,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        horizon=config.horizon,
        quantiles=config.model_quantiles,
        conv=0 if config.cell == "segrnn" else config.conv,  # `member_config` gives it to other cells
        ar=ar,
        season=season,
        segment=segment_length(config.cell, ar, season),
        known=len(spec.known_inputs) if spec.future_steps else 0,
        known_at=1 + len(spec.calendar) + len(spec.covariates) if spec.future_steps else 0,
        head_scale=choose_head_scale(config.head_scale, transform),
        lag_inputs=config.lag_inputs,
    )
    # Batch size and lane length follow the total length of all series, on every rank alike.
    totals = train_lengths if cluster is None else cluster.sum([train_lengths.sum()]).astype(np.int64)
    batch_size = effective_batch_size(totals, config.batch_size, config.bptt)
    lane_length = lane_length_for(totals, batch_size, config.bptt)
    lanes = make_lanes(offsets, train_lengths, config.horizon, lane_length, config.bptt)
    layout = None
    if cluster is not None:
        per_series = lanes_per_series(train_lengths, config.horizon, lane_length)
        layout = global_lanes(cluster, ids, per_series, lanes, config.bptt)
    table = torch.from_numpy(inputs.inputs)
    values = table[:, 0].contiguous()
    val_positions = [np.arange(n - 1, n + val_size - config.horizon) for n in train_lengths.tolist()]
    val_targets = _val_targets(values, offsets, val_positions, config.horizon)
    row_weight = val_weight = None
    if config.series_weight != "equal":
        power = SERIES_WEIGHT_POWERS[config.series_weight]
        weights = mase_weights(inputs.inputs[:, 0], offsets, train_lengths, season, cluster, power)
        row_weight = torch.from_numpy(np.repeat(weights, lengths).astype(np.float32))
        val_rows = torch.from_numpy(np.concatenate([offsets[i] + p for i, p in enumerate(val_positions)]))
        val_weight = row_weight[val_rows]
    # Left to its default, a least-squares highway is the mean of fits over several lengths.
    windows = highway_windows(model_config.ar) if config.ar is None else (model_config.ar,)
    start, ar_start, window = choose_start(
        config.ar_start,
        inputs.inputs[:, 0],
        offsets,
        train_lengths,
        val_positions,
        windows,
        config.horizon,
        season,
        squared=config.loss == "mse",
        cluster=cluster,
        naive_pooled=spec.scaling == "spread",
    )
    log.info(
        "the linear highway starts as %s over the last %d values",
        "least squares" if start == "ridge" else "seasonal naive",
        window,
    )
    model_config = replace(
        model_config,
        ar_start=start,
        ar=window,
        net_window=network_window(model_config.ar, window),  # 0 for a window given (`--ar`)
        segment=segment_length(config.cell, window, season),  # as `member_config`'s
    )
    # Training reads its rows on the device; validation runs through `run_series` and scores on the CPU.
    work = _Work(
        table.to(device),
        values.to(device),
        lanes,
        batch_size,
        inputs.inputs,
        offsets,
        val_positions,
        val_targets,
        row_weight.to(device) if row_weight is not None else None,
        val_weight,
        device,
        cluster,
        layout,
        ar_start,
    )
    series, rows = len(ids), int(lengths.sum())
    if cluster is not None:
        series, rows = (int(n) for n in cluster.sum([series, rows]))
    return Prepared(
        data,
        config,
        spec,
        scaler,
        model_config,
        work,
        series,
        rows,
        val_size,
        lane_length,
        floor_series,
        level_spread,
    )


def _level_spread(
    transform: str,
    requested: str,
    raw: np.ndarray,
    offsets: np.ndarray,
    train_lengths: np.ndarray,
    season: int,
    cluster: Cluster | None = None,
) -> tuple[str, dict | None]:
    """`--transform auto` on positive data: logs only where the series' spread grows with their
    level (`streamcast.levelspread`), over every rank's series alike. -> the transform, and what
    the test found for the model's info: the series' median Box-Cox lambda, or None where no
    series holds two whole seasons to test (positive data then keeps logs)."""
    if requested != "auto" or transform != "log":
        return transform, None
    lambdas = series_lambdas(raw, offsets, train_lengths, season)
    if cluster is not None:
        lambdas = np.concatenate(cluster.gather(lambdas))
    suits, middle = logs_suit(lambdas)
    found = {"lambda": None if middle is None else round(middle, 3), "log_below": LOG_BELOW}
    return ("log" if suits else "none"), found


def train_members(
    plans: list[MemberPlan],
    work: _Work,
    on_epoch: Callable[[EpochStats], None] | None,
    deadline: float | None = None,
    jobs: int = 1,
) -> tuple[list[tuple[MemberPlan, RecurrentForecaster, FitResult]], int]:
    """Train each plan in turn, or `jobs` at a time in child processes (the same weights);
    Ctrl-C (or the deadline) ends the run and keeps what is trained. -> what was trained, and
    how many trained at once."""
    trained, at_once = None, 1
    if jobs > 1 and len(plans) > 1 and side_by_side(work):
        try:
            trained, at_once = _side_by_side(plans, work, on_epoch, deadline, jobs)
        except NoRoom as exc:
            log.warning("%s; training the members in turn", exc)
    if trained is None:
        trained = _in_turn(plans, work, on_epoch, deadline)
    if not trained:
        raise Interrupted("training was interrupted before the first epoch finished; nothing to keep")
    return trained, at_once


def _in_turn(plans, work: _Work, on_epoch, deadline: float | None) -> list:
    trained = []
    for m, plan in enumerate(plans):
        if deadline is not None and trained and time.monotonic() >= deadline:
            break  # the first member always trains: a budget never leaves nothing to keep
        net, result = _train_member(plan, m + 1, work, on_epoch, deadline)
        if result.history:
            trained.append((plan, net, result))
        if result.interrupted:
            break
    return trained


def _side_by_side(plans, work: _Work, on_epoch, deadline: float | None, jobs: int) -> tuple[list, int]:
    done, interrupted = train_in_processes(_train_member, plans, work, on_epoch, deadline, jobs)
    trained = [(plans[m], net, result) for m, (net, result) in sorted(done.items()) if result.history]
    if trained and interrupted and not any(r.interrupted for *_, r in trained):
        trained[-1][2].interrupted = True  # members were left out: the run did not finish
    return trained, min(jobs, len(done))


def member_jobs(requested: int | str, members: int, threads: int, prepared: Prepared) -> int:
    """How many of `members` train at once (`streamcast.memberjobs.resolve_jobs`): one where they
    cannot train in processes of their own."""
    if not side_by_side(prepared.work):
        return 1
    timesteps = prepared.rows * prepared.config.epochs
    return resolve_jobs(requested, members, threads, timesteps, work_bytes(prepared.work))


def side_by_side(work: _Work) -> bool:
    """Whether members can train in processes of their own: one process on the CPU (torchrun's
    ranks already share the cores, and a GPU's memory is not to be split)."""
    return work.cluster is None and work.device.type == "cpu"


def assemble(
    prepared: Prepared, trained: list[tuple[MemberPlan, RecurrentForecaster, FitResult]], jobs: int = 1
) -> Forecaster:
    """One network (or an ensemble of the members) with the metadata the model file keeps."""
    config, data, work = prepared.config, prepared.data, prepared.work
    _, net, result = trained[0]
    if len(trained) > 1:
        net = EnsembleForecaster.of([n for _, n, _ in trained], config.ensemble_combine)
    cluster = work.cluster
    scaler = prepared.scaler if cluster is None else gather_scaler(cluster, prepared.scaler)
    info = {
        "fit_config": asdict(config),
        "data": {
            "source": _absolute(data.source),
            "fingerprint": data_fingerprint(data.source),
            "series": prepared.series,
            "rows": prepared.rows,
            "freq": data.freq,
            "time_zone": zone_of(data.frame["timestamp"]),
            "glitch_ratio": data.glitch_ratio,
        },
        "history": [asdict(s) for s in result.history],
        "gradient_health": health_summary(result.history, result.best_epoch),
        "best_epoch": result.best_epoch,
        "averaged": list(result.averaged),  # epochs whose mean weights member 1 serves (none: the best's)
        "averaged_val_loss": result.averaged_val_loss,
        "interrupted": any(r.interrupted for *_, r in trained),
        "val_size": prepared.val_size,
        "batch_size": work.batch_size,
        "lane_length": prepared.lane_length,
        "lanes": len(work.lanes) if work.layout is None else len(work.layout),
        "device": device_name(work.device),
        "world_size": 1 if cluster is None else cluster.world_size,
        "jobs": jobs,  # members trained at once, each in its own process
    }
    if len(trained) > 1:
        info["members"] = [
            {
                "cell": n.config.cell,
                "hidden_size": n.config.hidden_size,
                "ar": n.config.ar,
                "lr": plan.config.lr,
                "batches": plan.config.segment_batches,  # lanes, or random windows (windowbatches)
                "seed": plan.seed,
                "best_epoch": r.best_epoch,
                "averaged": list(r.averaged),
                "val_loss": r.best_val_loss,
                "history": [asdict(s) for s in r.history],
            }
            for plan, n, r in trained
        ]
    # Seasonal naive is read from the window; the last value needs only the newest value in it.
    seasonal = net.config.ar >= net.config.season
    last_only = not seasonal and config.fallback_to == "best" and net.config.ar > 0
    checked = bool(config.naive_fallback) and (seasonal or last_only)
    calibrated = bool(config.intervals) and not config.quantiles and net.config.ar > 0
    if len(trained) > 1:
        nets = [n for _, n, _ in trained]
        if config.ensemble_combine == "mean" and len({n.config.cell == "segrnn" for n in nets}) == 2:
            net, info["segment_share"] = _fit_segment_share(nets, work, config)
        outputs = validation_outputs(net, work)
        info["ensemble_val_loss"] = validation_score(outputs, work, config, net.config.quantiles)
    late = _late_validation(net, work, prepared.val_size) if checked or calibrated else None
    shares, at_last = np.zeros(len(work.val_positions)), np.zeros(len(work.val_positions), dtype=bool)
    if checked:
        shares, at_last = _naive_shares(late, config, prepared.val_size / net.config.horizon, last_only)
    ids, _ = series_offsets(data.frame)
    naive = [s for s, share in zip(ids, shares.tolist(), strict=True) if share >= 1]
    blended = {s: share for s, share in zip(ids, shares.tolist(), strict=True) if 0 < share < 1}
    last = [s for s, chosen in zip(ids, at_last.tolist(), strict=True) if chosen]
    if cluster is not None:
        naive = [s for part in cluster.gather(naive) for s in part]
        blended = {s: w for part in cluster.gather(blended) for s, w in part.items()}
        last = [s for part in cluster.gather(last) for s in part]
    info["naive_fallback"] = {
        "ratio": config.naive_fallback,
        "series": len(naive),
        "blended": len(blended),
        "to": "last" if checked and last_only else config.fallback_to,  # last: no season in the window
        "last_value": len(last),
        "share": config.naive_share,
    }
    if config.naive_fallback:
        info["naive_fallback"]["blend_from"] = round(BLEND_FROM * config.naive_fallback, 6)
    if config.naive_fallback and not checked:
        info["naive_fallback"]["skipped"] = "the --ar window is shorter than a season"
    intervals = None
    if calibrated:
        intervals, reason = _calibrated(net, late, shares, at_last, work, config)
        info["intervals"] = {"levels": sorted(config.intervals), "widen": config.interval_widen}
        if reason:
            info["intervals"]["skipped"] = reason
    elif config.intervals and not config.quantiles:
        info["intervals"] = {"levels": sorted(config.intervals), "skipped": "no --ar window to scale it by"}
    if prepared.level_spread is not None:
        info["transform_auto"] = prepared.level_spread
    if prepared.floor_series:
        info["floor"] = {"series": len(prepared.floor_series)}
    static = _static_values(data, config.static)
    return Forecaster(
        net=net,
        spec=prepared.spec,
        scaler=scaler,
        columns=data.columns,
        info=info,
        static_values=static,
        naive_series=frozenset(naive),
        naive_share=blended,
        naive_last=frozenset(last),
        floor_series=prepared.floor_series,
        intervals=intervals,
    )


def _naive_shares(late: LateValidation, config: FitConfig, horizons: float, last_only: bool):
    """(S,) each series' share of naive and (S,) whether that naive is its last value: by the
    ratio's ramp (`badly_served`), or with `--naive-share fitted` the fitted share
    (`fitted_shares`) where it is larger; only the last value where the window holds no season."""
    toward = late.last if last_only else late.naive
    either = late.last if config.fallback_to == "best" and not last_only else None
    share, at_last = badly_served(
        late.point, late.targets, toward, late.counts, config.naive_fallback, either
    )
    if config.naive_share == "fitted":
        squared = config.loss == "mse" and not config.quantiles  # a quantile model trains on pinball
        fitted, fitted_last = fitted_shares(
            late.point, late.targets, toward, late.counts, squared, horizons, either
        )
        larger = fitted > share
        share, at_last = np.where(larger, fitted, share), np.where(larger, fitted_last, at_last)
    return share, (share > 0) if last_only else at_last


def _floored(
    raw: np.ndarray,
    offsets: np.ndarray,
    ids: list[str],
    spec: FeatureSpec,
    requested: str,
    cluster: Cluster | None,
) -> frozenset[str]:
    """The series bounded at 0 on their own (`nonnegative_series`, over each whole series, as
    `choose_floor` reads the whole data: the validation part is the newest, served from next):
    only where `--transform auto` left the data in its units and the spec bounds no series yet."""
    if not bounds_alone(spec, requested):
        return frozenset()
    floored = nonnegative_series(raw, offsets, ids, np.diff(offsets))
    if cluster is not None:
        floored = [s for part in cluster.gather(floored) for s in part]
    return frozenset(floored)


def _point(net) -> int:
    """Which of the network's outputs is its point forecast."""
    q = net.config.quantiles
    return q.index(0.5) if q else 0


@dataclass(frozen=True)
class LateValidation:
    """The served network's forecasts from every origin whose steps reach into the validation
    part (R, H, with the targets outside it NaN), seasonal naive's from the same origins, and
    each origin's window unit (NaN where too short: `intervals.window_unit`)."""

    point: np.ndarray
    naive: np.ndarray
    last: np.ndarray  # the last value's forecasts (naive without a season)
    targets: np.ndarray
    units: np.ndarray
    counts: np.ndarray  # origins per series


def _late_validation(net, work: _Work, val_size: int) -> LateValidation:
    """Every forecast step that lands in the validation part, from origins back to a horizon
    before it: `val_size` errors per step and series instead of one origin's, so that the
    naive fallback's choice and the interval rest on many errors. Their targets were never
    trained on; only their windows were. On M4 Hourly the fallback chosen on them at ratio 1.5
    lowered MASE on every seed where the one origin's choice at 2 had (0.830 -> 0.819, 0.837 ->
    0.820), and sMAPE with it."""
    c = net.config
    trained = [int(p[0]) + 1 for p in work.val_positions]  # each series' training length
    # Every `every`-th origin where there are many: the choices need far fewer errors than a
    # large fit has, and each costs a row of doubles per horizon step. Counted over every rank's
    # series, so that torchrun takes the origins one process takes.
    series = len(trained) if work.cluster is None else int(work.cluster.sum([len(trained)])[0])
    every = max(1, -(-series * (c.horizon + val_size) // MAX_CALIBRATION_ORIGINS))
    positions = [np.arange(max(0, n - c.horizon), n + val_size - 1, every) for n in trained]
    outputs, _ = run_series(net, work.inputs, work.offsets, positions)
    counts = np.array([len(p) for p in positions])
    origins = np.concatenate(positions) if len(positions) else np.zeros(0, dtype=np.int64)
    starts = np.repeat(work.offsets[:-1], counts)
    ends = np.repeat(np.array(trained), counts)
    point = served_point(outputs.numpy(), _point(net)).astype(np.float64)
    values = work.values.cpu().numpy()
    naive = naive_at(values, starts, origins, c.horizon, c.season).astype(np.float64)
    last = naive_at(values, starts, origins, c.horizon, 1).astype(np.float64)
    at = origins[:, None] + np.arange(1, c.horizon + 1)  # (R, H) the position of each target
    inside = (at >= ends[:, None]) & (at < ends[:, None] + val_size)
    targets = np.where(inside, values[starts[:, None] + np.where(inside, at, 0)].astype(np.float64), np.nan)
    units = units_at(values, starts, origins, c.ar, c.season).astype(np.float64)
    return LateValidation(point, naive, last, targets, units, counts)


def _calibrated(
    net, late: LateValidation, shares: np.ndarray, at_last: np.ndarray, work: _Work, config
) -> tuple[Intervals | None, str | None]:
    """The interval around the forecasts as served (naive, whole or in part, for the series it
    serves: the last value for those `at_last`), from their errors on the validation part, each
    in units of its origin's window (`streamcast.intervals`)."""
    c = net.config
    naive = np.where(np.repeat(at_last, late.counts)[:, None], late.last, late.naive)
    served = toward_naive(late.point, naive, np.repeat(shares, late.counts)[:, None])
    own = late.units[~np.isnan(late.units)]
    if work.cluster is not None:
        own = np.concatenate(work.cluster.gather(own))
    if not len(own):
        return None, f"no validation origin has {max(c.season, MIN_CHANGES)} steps of history in its window"
    typical = float(np.median(own))  # the unit of windows with too little history of their own
    errors = (late.targets - served) / np.nan_to_num(late.units, nan=typical)[:, None]
    if work.cluster is not None:
        errors = np.concatenate(work.cluster.gather(errors))
    return calibrate(errors, tuple(sorted(config.intervals)), c.season, typical, config.interval_widen)


def _static_values(data: SeriesFrame, columns: tuple[str, ...]) -> dict[str, tuple]:
    if not columns:
        return {}
    return {row[0]: tuple(row[1:]) for row in data.static.select("series_id", *columns).iter_rows()}


MAX_WEIGHT_RATIO = 10.0
MAX_CALIBRATION_ORIGINS = 200_000  # origins the interval is calibrated from, at most


def mase_weights(
    scaled: np.ndarray,
    offsets: np.ndarray,
    train_lengths: np.ndarray,
    season: int,
    cluster: Cluster | None = None,
    power: float = 1.0,
) -> np.ndarray:
    """`--series-weight mase`: each series' loss divided by its in-sample seasonal naive error, so that
    the loss is the MASE that users and the M4 rules judge by, not a relative error.

    A very smooth series would then outweigh all others (a 0.5% error can be a MASE of 9), so the
    weights stay within MAX_WEIGHT_RATIO of their median either way. `power` (`soft-mase`: 1/4)
    tilts the loss toward MASE without letting the smoothest series lead it
    (`losses.choose_series_weight`).
    """
    weights = np.empty(len(train_lengths))
    for i, n in enumerate(train_lengths.tolist()):
        part = scaled[offsets[i] : offsets[i] + n].astype(np.float64)
        lag = season if n > season else 1
        step = np.abs(part[lag:] - part[:-lag]).mean() if n > lag else 0.0
        weights[i] = 1.0 / step if step > 1e-12 else np.inf
    if cluster is None:
        finite = weights[np.isfinite(weights)]
        middle = float(np.median(finite)) if finite.size else 1.0
    else:
        middle = agree_median(cluster, weights)
    return np.clip(weights / middle, 1 / MAX_WEIGHT_RATIO, MAX_WEIGHT_RATIO) ** power


def member_seed(seed: int, member: int) -> int:
    """Member 0 trains under --seed itself, so a one-member fit is the single model of that seed;
    member m >= 1 under a seed drawn from (--seed, m), so that fits under two seeds share no
    member. Under --seed + m, as until 2026-12-02, --seed 0 and --seed 1 shared two of their three
    members, and a spread measured over successive seeds understated the noise it was to gauge."""
    seed %= 2**32
    if member == 0:
        return seed
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


@dataclass
class _Work:
    """What every member trains and validates on: the input table, lanes and validation targets."""

    table: torch.Tensor
    values: torch.Tensor
    lanes: Lanes
    batch_size: int
    inputs: np.ndarray
    offsets: np.ndarray
    val_positions: list[np.ndarray]
    val_targets: torch.Tensor
    row_weight: torch.Tensor | None = None  # (N,) --series-weight of each input row's series
    val_weight: torch.Tensor | None = None  # (R,) the same for the validation origins
    device: torch.device = CPU
    cluster: Cluster | None = None  # under torchrun: the other ranks, which hold the other series
    layout: GlobalLanes | None = None  # with a cluster: every rank's lanes, for one batch order
    ar_start: torch.Tensor | None = None  # (horizon, ar) the highway's start, if not seasonal naive


def _train_member(
    plan: MemberPlan,
    member: int,
    work: _Work,
    on_epoch: Callable[[EpochStats], None] | None,
    deadline: float | None = None,
) -> tuple[RecurrentForecaster, FitResult]:
    """Train one network with early stopping; it comes back with its best weights.

    Each member draws its own initial weights and lane order from its seed; the first member's
    seed is --seed itself, so a one-member fit is the single model it always was. Past `deadline`
    (time.monotonic) no new epoch starts.
    """
    model_config, config, seed = plan.model, plan.config, plan.seed
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    fits = work.ar_start is not None and work.ar_start.shape == (model_config.horizon, model_config.ar)
    if model_config.ar_start == "ridge" and not fits:  # --auto's longer window: trained from naive
        model_config = replace(model_config, ar_start="naive")
    net = RecurrentForecaster(model_config)
    if model_config.ar_start == "ridge" and model_config.cell != "segrnn":  # segrnn: no highway
        with torch.no_grad():
            net.ar.weight.copy_(work.ar_start)
    net = net.to(work.device)
    optimizer = _optimizer(net, config)
    random_windows = model_config.cell == "segrnn" and config.segment_batches == "random"
    scheduler = _scheduler(optimizer, config, _steps_per_epoch(work, config, random_windows))
    train_epoch = _epoch_trainer(work, random_windows)
    result = FitResult()
    best_val, best_weights, waited = math.inf, copy.deepcopy(net.state_dict()), 0
    best_epochs = BestEpochs(config.average_epochs)
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            health = GradientHealth(config.clip)
            train_loss, timesteps = train_epoch(net, optimizer, work, config, rng, health, scheduler, epoch)
            reach = gradient_reach(
                net,
                work.table,
                work.lanes,
                config,
                lambda which: lane_state(net, work.values, work.lanes, which),
            )
            if work.cluster is not None:
                reach = int(work.cluster.gather(reach)[0])  # rank 0's lanes, as one process's first
            val_loss = validation_loss(net, work, config)
            seconds = time.perf_counter() - started
            improved = val_loss < best_val
            if improved:
                best_val, best_weights, waited, result.best_epoch = (
                    val_loss,
                    copy.deepcopy(net.state_dict()),
                    0,
                    epoch,
                )
            else:
                waited += 1
            best_epochs.offer(val_loss, epoch, net.state_dict())
            stats = EpochStats(
                epoch=epoch,
                train_loss=train_loss,
                val_loss=val_loss,
                grad_norm_median=health.median,
                grad_norm_max=health.max,
                clipped_share=health.clipped_share,
                skipped_steps=health.skipped,
                gradient_reach=reach,
                lr=optimizer.param_groups[0]["lr"],
                seconds=seconds,
                timesteps_per_second=timesteps / seconds,
                best=improved,
                member=member,
            )
            result.history.append(stats)
            log.info(
                "member %d epoch %d train_loss=%.4g val_loss=%.4g %.1fs%s",
                member,
                epoch,
                train_loss,
                val_loss,
                seconds,
                " *best" if improved else "",
            )
            if on_epoch is not None:
                on_epoch(stats)
            _step_scheduler(scheduler, val_loss)
            if waited >= config.patience or (deadline is not None and time.monotonic() >= deadline):
                break
    except KeyboardInterrupt:
        result.interrupted = True
    if result.history and result.best_epoch == 0:
        skipped = sum(s.skipped_steps for s in result.history)
        raise DataError(
            f"training diverged: no epoch gave a finite validation loss ({skipped} steps skipped for a "
            "non-finite loss or gradient); lower --lr, keep --clip on, or check the data for extreme values"
        )
    net.load_state_dict(best_weights)
    if not result.interrupted:  # Ctrl-C asked to stop now: not one more validation pass
        _average_best(net, best_epochs, best_weights, work, config, result, member)
    net.eval()
    return net, result


def _average_best(
    net: RecurrentForecaster,
    best: BestEpochs,
    alone: dict[str, torch.Tensor],
    work: _Work,
    config: FitConfig,
    result: FitResult,
    member: int,
) -> None:
    """Serve the mean of the best epochs' weights where it scores better on the validation part
    than the best epoch's weights `alone` (which `net` holds); otherwise leave those."""
    mean = best.mean()
    if mean is None:
        return
    net.load_state_dict(mean)
    loss = validation_loss(net, work, config)
    if loss < result.best_val_loss:
        result.averaged, result.averaged_val_loss = best.epochs, loss
        log.info("member %d: the mean of epochs %s scored val_loss=%.4g", member, best.epochs, loss)
    else:
        net.load_state_dict(alone)


def _absolute(source: str) -> str:
    """Where the data is, from anywhere: cron runs `forecast` in another working directory."""
    path = Path(source)
    return str(path.resolve()) if source not in ("-", "<frame>") and path.exists() else source


def data_fingerprint(source: str) -> str | None:
    """sha256 of the training file, so that a later run can tell whether the data changed."""
    path = Path(source)
    if source == "-" or not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def health_summary(history: list[EpochStats], best_epoch: int) -> dict[str, float | int]:
    """The whole run in a few numbers: did gradients explode (clipping), vanish (reach), or break?"""
    best = history[best_epoch - 1] if best_epoch else history[-1]
    return {
        "grad_norm_median": float(np.median([s.grad_norm_median for s in history])),
        "grad_norm_max": max(s.grad_norm_max for s in history),
        "clipped_share": float(np.mean([s.clipped_share for s in history])),
        "skipped_steps": sum(s.skipped_steps for s in history),
        "gradient_reach": best.gradient_reach,
        "timesteps_per_second": float(np.median([s.timesteps_per_second for s in history])),
    }


def _together(cluster: Cluster | None) -> AbstractContextManager[None]:
    """`Cluster.together` under torchrun; nothing to agree on in one process."""
    return nullcontext() if cluster is None else cluster.together()


def _check_lengths(ids: list[str], lengths: np.ndarray, horizon: int, val_size: int) -> None:
    """Every series needs a training part with at least one full target window, plus validation."""
    needed = needed_points(horizon, val_size)
    short = np.flatnonzero(lengths < needed)
    if len(short):
        i = int(short[0])
        raise DataError(
            f"series {ids[i]!r} has {int(lengths[i])} points but fit needs at least {needed} "
            f"(--val-size {val_size} + --horizon {horizon} + 2); "
            f"{len(short)} series are that short: lower --horizon or --val-size, or drop them"
        )


def _training_rows(offsets: np.ndarray, train_lengths: np.ndarray) -> np.ndarray:
    """A row mask: True for rows in the training part of their series."""
    mask = np.zeros(int(offsets[-1]), dtype=bool)
    for start, n in zip(offsets[:-1].tolist(), train_lengths.tolist(), strict=True):
        mask[start : start + n] = True
    return mask


def _optimizer(net: nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    params, lr, wd = net.parameters(), config.lr, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)


def _scheduler(optimizer: torch.optim.Optimizer, config: FitConfig, steps_per_epoch: int):
    if config.lr_schedule == "warmup-cosine":
        # Per optimizer step: a linear warm-up over the first epoch (Adam's early moments are
        # noisy), then a cosine decay to a hundredth of --lr at the last epoch, which settles
        # the weights where the validation curve would otherwise keep jumping.
        warmup, total = steps_per_epoch, max(1, steps_per_epoch * config.epochs)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def _step_scheduler(scheduler, val_loss: float) -> None:
    """Once an epoch; the per-step warm-up-cosine schedule steps in `_train_epoch` instead."""
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()


def chunk_targets(values: torch.Tensor, rows: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, T) input rows -> (B, T, H) the next H scaled values of each row's series."""
    ahead = rows.unsqueeze(-1) + torch.arange(1, horizon + 1, device=rows.device)  # (B, T, H)
    return values[ahead.clamp_(max=len(values) - 1)]


def _steps_per_epoch(work: _Work, config: FitConfig, random_windows: bool = False) -> int:
    """Optimizer steps in one epoch: groups of lanes x the chunks that hold a loss step (a lane's
    warm-up chunk holds none and takes no step), or batches of random windows; over all ranks'
    lanes under torchrun."""
    lanes, layout, bptt = work.lanes, work.layout, config.bptt
    if random_windows:
        steps = (
            int(lanes.loss_mask.sum())
            if layout is None
            else int(global_steps(layout.lengths, layout.firsts)[-1])
        )
        drawn = max(1, steps // config.segment_stride)
        return -(-drawn // windows_per_batch(work.batch_size, bptt, config.segment_stride))
    if layout is not None:
        chunks, count = layout.chunks_with_loss, len(layout)
    else:
        chunks, count = (loss_chunks(lanes, bptt) if len(lanes) else None), len(lanes)
    if not count:
        return 1
    return max(1, -(-count // work.batch_size) * int(chunks.max()))


def _epoch_trainer(work: _Work, random_windows: bool) -> Callable:
    """How a member's epoch walks the data: lanes in chunks, or (a segrnn member, `--segment-batches`)
    random windows; alone or with the other ranks under torchrun."""
    if random_windows:
        return _train_epoch_windows if work.cluster is None else _train_epoch_windows_sharded
    return _train_epoch if work.cluster is None else _train_epoch_sharded


def _train_epoch(
    net, optimizer, work: _Work, config: FitConfig, rng, health, scheduler, epoch: int
) -> tuple[float, int]:
    """One pass over every lane, in shuffled groups of `batch_size` lanes, state carried per group."""
    table, values, lanes, batch_size = work.table, work.values, work.lanes, work.batch_size
    net.train()
    order = rng.permutation(len(lanes))
    total_loss, total_weight, timesteps = 0.0, 0, 0
    params = [p for p in net.parameters() if p.requires_grad]
    for g in range(0, len(order), batch_size):
        group = order[g : g + batch_size]
        rows = torch.from_numpy(lanes.rows[group]).to(work.device)
        mask = torch.from_numpy(lanes.loss_mask[group]).to(work.device)
        width = int(lanes.lengths[group].max())
        state = lane_state(net, values, lanes, group)
        for start in range(0, width, config.bptt):
            chunk_rows = rows[:, start : start + config.bptt]
            timesteps += int(chunk_rows.numel())
            y, state, scored = _scored_forward(
                net, table[chunk_rows], state, config.segment_stride, start + epoch
            )
            chunk_rows, chunk_mask = chunk_rows[:, scored], mask[:, start : start + config.bptt][:, scored]
            # Truncated BPTT: the state's values flow on to the next chunk, its gradient does not.
            state = detach_state(state)
            weight = int(chunk_mask.sum())
            if weight == 0:
                continue
            loss = forecast_loss(
                y,
                chunk_targets(values, chunk_rows, config.horizon),
                chunk_mask,
                config.loss,
                net.config.quantiles,
                work.row_weight[chunk_rows] if work.row_weight is not None else None,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not _step(optimizer, params, config, health, scheduler, loss.item()):
                continue
            total_loss += loss.item() * weight
            total_weight += weight
    # Every step skipped (a diverged run) has no loss to report, not a perfect one.
    return (total_loss / total_weight if total_weight else math.nan), timesteps


def _train_epoch_windows(
    net, optimizer, work: _Work, config: FitConfig, rng, health, scheduler, epoch: int
) -> tuple[float, int]:
    """A segrnn member's epoch on windows drawn at random from every lane step of every series
    (`streamcast.windowbatches`): as many as a strided lane epoch scores, in batches of as many
    as a group of lanes scores in one chunk, so it costs what a lane epoch does."""
    rows, origins = loss_steps(work.lanes)
    drawn = epoch_draw(rng, len(rows), config.segment_stride)
    size = windows_per_batch(work.batch_size, config.bptt, config.segment_stride)
    net.train()
    total_loss, total_weight = 0.0, 0
    params = [p for p in net.parameters() if p.requires_grad]
    for b in range(0, len(drawn), size):
        picked = drawn[b : b + size]
        loss_sum, divisor = _window_loss_terms(net, work, config, rows[picked], origins[picked])
        loss = loss_sum / divisor
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not _step(optimizer, params, config, health, scheduler, loss.item()):
            continue
        total_loss += loss.item() * len(picked)
        total_weight += len(picked)
    return (total_loss / total_weight if total_weight else math.nan), len(drawn)


def _train_epoch_windows_sharded(
    net, optimizer, work: _Work, config: FitConfig, rng, health, scheduler, epoch: int
) -> tuple[float, int]:
    """`_train_epoch_windows` with each batch's windows trained by the ranks that hold their
    series: every rank draws one process's positions over all ranks' lanes, in its order, and
    scores those of its own lanes; the step is one process's (`_sum_and_step`)."""
    cluster, layout, lanes = work.cluster, work.layout, work.lanes
    assert cluster is not None and layout is not None
    starts = global_steps(layout.lengths, layout.firsts)
    drawn = epoch_draw(rng, int(starts[-1]), config.segment_stride)
    size = windows_per_batch(work.batch_size, config.bptt, config.segment_stride)
    net.train()
    total_loss, total_weight = 0.0, 0.0
    params = [p for p in net.parameters() if p.requires_grad]
    for b in range(0, len(drawn), size):
        lane, step = mine(layout, starts, drawn[b : b + size], cluster.rank)
        optimizer.zero_grad(set_to_none=True)
        terms = [torch.zeros((), device=work.device)] * 3  # loss sum, its divisor, windows
        if len(lane):
            loss_sum, divisor = _window_loss_terms(
                net, work, config, lanes.rows[lane, step], lanes.origins[lane]
            )
            loss_sum.backward()
            terms = [loss_sum.detach(), divisor.detach(), torch.tensor(float(len(lane)), device=work.device)]
        loss, weight = _sum_and_step(cluster, params, terms, optimizer, config, health, scheduler)
        total_loss += loss * weight
        total_weight += weight
    return (total_loss / total_weight if total_weight else math.nan), len(drawn)


def _window_loss_terms(
    net, work: _Work, config: FitConfig, rows: np.ndarray, origins: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of the forecasts from the windows ending at these rows, as a sum and its divisor."""
    at = torch.from_numpy(rows[:, None]).to(work.device)  # (B, 1)
    windows = windows_at(work.values, rows, origins, net.config.ar)
    forecasts = window_forecasts(net, windows, work.table[at[:, 0]])
    return loss_terms(
        forecasts,
        chunk_targets(work.values, at, config.horizon),
        torch.ones(len(rows), 1, dtype=torch.bool, device=work.device),
        config.loss,
        net.config.quantiles,
        work.row_weight[at] if work.row_weight is not None else None,
    )


def lane_state(net: RecurrentForecaster, values: torch.Tensor, lanes: Lanes, which: np.ndarray):
    """These lanes' state as they start: zeros, but the window, which holds the values before each
    lane's first step, as serving's holds them there (`lanes.window_rows`)."""
    state = net.init_state(len(which))
    if net.config.ar == 0:
        return state
    window = windows_at(values, lanes.rows[which, 0] - 1, lanes.origins[which], net.config.ar)
    return (*state[:-1], window.to(state[-1].dtype))


def _scored_forward(net: RecurrentForecaster, x: torch.Tensor, state, stride: int, step: int):
    """A chunk's forecasts at the steps its loss scores, the new state, and which steps those are:
    every step, or a segrnn network's every `stride`th lane step, `step` being the chunk's first
    lane step plus the epoch: evenly spaced across the chunks, shifted by one each epoch, so that
    every step is trained on once in `stride` epochs (each lane alike: a chunk's lanes are one
    tensor).

    A segrnn network runs its GRU over the whole window at every step it forecasts, where an LSTM
    steps once, and neighbouring windows differ by one value: scoring every 4th step cut ETTh1's
    fit 2.6x for the same validation MSE (README, `--segment-stride`). Its window still
    advances over every step, so the next chunk starts where a full pass would."""
    if net.config.cell != "segrnn" or stride == 1:
        y, state = net(x, state)
        return y, state, slice(None)
    features, state = net.encode(x, state)
    scored = slice(-step % stride, None, stride)
    return net.decode(features[:, scored]), state, scored


def _step(optimizer, params, config: FitConfig, health, scheduler, loss: float) -> bool:
    """Clip the gradients and take the optimizer step, unless the loss or the gradient is not
    finite (then the weights stay sound and the step is counted as skipped)."""
    norm = float(nn.utils.clip_grad_norm_(params, config.clip if config.clip > 0 else math.inf))
    if not (math.isfinite(norm) and math.isfinite(loss)):
        health.record_skip()
        return False
    health.record(norm)
    if config.clip_value > 0:
        nn.utils.clip_grad_value_(params, config.clip_value)
    optimizer.step()
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        scheduler.step()
    return True


def _train_epoch_sharded(
    net, optimizer, work: _Work, config: FitConfig, rng, health, scheduler, epoch: int
) -> tuple[float, int]:
    """`_train_epoch` with each batch's lanes trained by the ranks that hold them.

    Every rank draws the same order of all ranks' lanes, so the batches are one process's. A rank
    sums its lanes' losses (never averages them) and back-propagates that sum; one all-reduce adds
    up the gradients, sums and counts of all ranks, and each rank divides by the whole batch's
    count: the gradient of one process's mean loss, so every rank takes one process's step.
    """
    cluster, layout, lanes, bptt = work.cluster, work.layout, work.lanes, config.bptt
    assert cluster is not None and layout is not None
    net.train()
    order = rng.permutation(len(layout))
    total_loss, total_weight, timesteps = 0.0, 0.0, 0
    params = [p for p in net.parameters() if p.requires_grad]
    for g in range(0, len(order), work.batch_size):
        group = order[g : g + work.batch_size]
        mine = layout.mine(group, cluster.rank)
        rows = torch.from_numpy(lanes.rows[mine]).to(work.device)
        mask = torch.from_numpy(lanes.loss_mask[mine]).to(work.device)
        state = lane_state(net, work.values, lanes, mine)
        for start in range(0, int(layout.lengths[group].max()), bptt):
            chunk_rows, chunk_mask = rows[:, start : start + bptt], mask[:, start : start + bptt]
            optimizer.zero_grad(set_to_none=True)
            terms = [torch.zeros((), device=work.device)] * 3  # loss sum, its divisor, loss steps
            if chunk_rows.numel():  # this rank holds lanes of the batch that reach this far
                timesteps += int(chunk_rows.numel())
                y, state, scored = _scored_forward(
                    net, work.table[chunk_rows], state, config.segment_stride, start + epoch
                )
                chunk_rows, chunk_mask = chunk_rows[:, scored], chunk_mask[:, scored]
                state = detach_state(state)
                weights = work.row_weight[chunk_rows] if work.row_weight is not None else None
                targets = chunk_targets(work.values, chunk_rows, config.horizon)
                loss_sum, divisor = loss_terms(
                    y, targets, chunk_mask, config.loss, net.config.quantiles, weights
                )
                loss_sum.backward()
                terms = [loss_sum.detach(), divisor.detach(), chunk_mask.sum().float()]
            loss, weight = _sum_and_step(cluster, params, terms, optimizer, config, health, scheduler)
            total_loss += loss * weight
            total_weight += weight
    timesteps = int(cluster.sum([timesteps])[0])
    return (total_loss / total_weight if total_weight else math.nan), timesteps


def _sum_and_step(
    cluster: Cluster, params: list, terms: list, optimizer, config: FitConfig, health, scheduler
) -> tuple[float, float]:
    """One all-reduce adds up every rank's gradients and `terms` (its loss sum, the sum's divisor,
    its loss steps); each rank divides by the whole batch's divisor, the gradient of one process's
    mean loss, and steps. The batch's loss and steps, (0, 0) where none held a loss or it was skipped."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = cluster.sum_(torch.cat([*(g.reshape(-1) for g in grads), *(t.reshape(1) for t in terms)]))
    divisor, weight = float(flat[-2]), float(flat[-1])
    if weight == 0:
        return 0.0, 0.0
    loss = float(flat[-3]) / divisor
    offset = 0
    for p in params:
        p.grad = (flat[offset : offset + p.numel()] / divisor).view_as(p)
        offset += p.numel()
    if not _step(optimizer, params, config, health, scheduler, loss):
        return 0.0, 0.0
    return loss, weight


def _val_targets(values, offsets, positions, horizon) -> torch.Tensor:
    rows = np.concatenate([offsets[i] + p for i, p in enumerate(positions)])
    return chunk_targets(values, torch.from_numpy(rows), horizon)  # (R, H)


def validation_loss(net, work: _Work, config: FitConfig) -> float:
    """The state is warmed over each series' training part first, exactly as `forecast` serves it."""
    return validation_score(validation_outputs(net, work), work, config, net.config.quantiles)


def _fit_segment_share(nets: list[RecurrentForecaster], work: _Work, config: FitConfig):
    """The ensemble served with the segrnn members' share of its mean fitted on the validation
    part (`cellshare`), and the share for the file's info."""
    groups = [[n for n in nets if (n.config.cell == "segrnn") == kind] for kind in (False, True)]
    step, segment = (
        validation_outputs(g[0] if len(g) == 1 else EnsembleForecaster.of(g, "mean"), work) for g in groups
    )
    quantiles = nets[0].config.quantiles
    share, scores = segment_share(step, segment, lambda y: validation_score(y, work, config, quantiles))
    weights = share_weights([n.config.cell for n in nets], share)
    log.info("segrnn members' share of the mean: %.3f (fitted on the validation part)", share)
    return EnsembleForecaster.of(nets, "mean", weights), {"share": share, "val_losses": scores}


def validation_outputs(net, work: _Work) -> torch.Tensor:
    """(R, H, Q) the forecasts at every validation origin, each series warmed from its start."""
    net.eval()
    outputs, _ = run_series(net, work.inputs, work.offsets, work.val_positions)
    return outputs


def validation_score(outputs: torch.Tensor, work: _Work, config: FitConfig, quantiles: tuple) -> float:
    """The validation loss of `validation_outputs`."""
    mask = torch.ones(outputs.shape[0], dtype=torch.bool)
    if work.cluster is None:
        return float(forecast_loss(outputs, work.val_targets, mask, config.loss, quantiles, work.val_weight))
    # Every rank scores its own series; the sums over all of them make one process's mean.
    terms = loss_terms(outputs, work.val_targets, mask, config.loss, quantiles, work.val_weight)
    total, count = work.cluster.sum([float(t) for t in terms])
    return float(total / count)
