"""`fit --auto`: try a few configurations within a time budget and keep what validates best.

Every candidate trains on the same scaled inputs, lanes and validation part (`training.prepare`),
so their validation losses compare like for like. The best few become an ensemble when their mean
(or median, `--ensemble-combine`) validates better than the best one alone; otherwise the best one is the model. What was tried, and
how each did, goes into the model file (`info.auto`) and the CLI's summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch

from streamcast.devices import resolve_device
from streamcast.errors import UsageError
from streamcast.forecaster import Forecaster
from streamcast.model import EnsembleForecaster
from streamcast.reading import SeriesFrame
from streamcast.shortseries import LeftOut
from streamcast.threads import torch_threads
from streamcast.training import (
    EpochStats,
    FitConfig,
    FitResult,
    MemberPlan,
    Prepared,
    around_training,
    assemble,
    member_config,
    member_jobs,
    member_seed,
    prepare,
    train_members,
    validation_loss,
)
from streamcast.windowbatches import member_batches

DEFAULT_BUDGET = 300.0  # seconds: "a few minutes" of a 2-core machine
KEEP = 3  # the best few that may form the ensemble


def candidate_plans(prepared: Prepared) -> list[MemberPlan]:
    """The configurations to try, most promising first: the defaults, then one change at a time
    (another cell, a wider network, a slower learning rate, a longer head window, another seed)."""
    base, config = prepared.model_config, prepared.config
    other_cell = "gru" if base.cell != "gru" else "lstm"
    variants = [
        (base, config),
        (member_config(base, other_cell, config.conv), config),  # a segrnn base's segment goes, or comes
        (replace(base, hidden_size=base.hidden_size * 2), config),
        (base, replace(config, lr=config.lr / 3)),
        (
            member_config(
                replace(base, ar=base.ar * 2, net_window=base.net_window * 2), base.cell, config.conv
            ),
            config,
        )
        if base.ar
        else None,
        (base, config),  # the defaults again under another seed
    ]
    plans = [v for v in variants if v is not None]
    batches = member_batches(config.segment_batches, [model.cell for model, _ in plans])
    return [
        MemberPlan(model, replace(cfg, segment_batches=batches[i]), member_seed(config.seed, i))
        for i, (model, cfg) in enumerate(plans)
    ]


def check_budget(time_budget: float) -> None:
    """A budget --auto cannot take, refused before any data is read."""
    if not 0 < time_budget < float("inf"):
        raise UsageError("--time-budget must be a positive number of seconds")


def fit_auto(
    data: SeriesFrame,
    config: FitConfig | None = None,
    time_budget: float = DEFAULT_BUDGET,
    on_epoch: Callable[[EpochStats], None] | None = None,
    threads: int | None = None,
    device: str = "auto",
    jobs: int | str = 1,
) -> Forecaster:
    """Train candidates until `time_budget` seconds are spent; keep the best one or the best few.
    `jobs`: candidates trained at once, each in its own process (as `fit`'s).

    >>> model = fit_auto(read_series("load.parquet"), FitConfig(horizon=48), time_budget=120)  # doctest: +SKIP
    >>> model.info["auto"]["chosen"]  # doctest: +SKIP
    """
    check_budget(time_budget)
    chosen_device = resolve_device(device)

    def train(data: SeriesFrame, config: FitConfig, left_out: LeftOut | None) -> Forecaster:
        # Each candidate seeds itself; the caller's generator and thread count stay as they were.
        with torch_threads(threads) as count, torch.random.fork_rng(devices=[]):
            return _fit_auto(data, config, time_budget, on_epoch, chosen_device, jobs, count, left_out)

    # The config's `ensemble` is ignored: --auto chooses.
    return around_training(data, config or FitConfig(), train)


def _fit_auto(data, config, time_budget, on_epoch, device, jobs, threads, left_out=None) -> Forecaster:
    started = time.monotonic()
    prepared = prepare(data, replace(config, ensemble=1), device=device, left_out=left_out)
    plans = candidate_plans(prepared)
    jobs = member_jobs(jobs, len(plans), threads, prepared)
    trained, jobs = train_members(plans, prepared.work, on_epoch, started + time_budget, jobs)
    ranked = sorted(trained, key=lambda t: t[2].best_val_loss)
    best_alone = ranked[0][2].best_val_loss
    chosen = ranked[:1]
    if len(ranked) >= 2:
        few = ranked[:KEEP]
        ensemble = EnsembleForecaster.of([n for _, n, _ in few], prepared.config.ensemble_combine)
        if validation_loss(ensemble, prepared.work, prepared.config) < best_alone:
            chosen = few
    model = assemble(prepared, chosen, jobs)
    model.info["auto"] = {
        "time_budget": time_budget,
        "seconds": time.monotonic() - started,
        "tried": [_describe(plan, result) for plan, _, result in trained],
        "chosen": [trained.index(t) + 1 for t in chosen],
    }
    return model


def _describe(plan: MemberPlan, result: FitResult) -> dict:
    return {
        "cell": plan.model.cell,
        "hidden_size": plan.model.hidden_size,
        "ar": plan.model.ar,
        "lr": plan.config.lr,
        "seed": plan.seed,
        "epochs": len(result.history),
        "val_loss": result.best_val_loss,
        "seconds": sum(s.seconds for s in result.history),
    }
