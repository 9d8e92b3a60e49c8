"""The network step of a micro-batch: a plan's rows through the network, every run of every series
in one batched call (`stepping.run_series`, the step training's validation and `forecast` use), with
input rows laid out as in training (`features.input_rows`). Advances the states, feeds online
learning, forecasts the rows that want one and, when watching, scores them."""

from __future__ import annotations

import numpy as np

from streamcast.features import input_rows, series_floors, static_rows, to_model_units
from streamcast.forecaster import Forecaster
from streamcast.stepping import run_series
from streamcast.stream.config import StreamConfig
from streamcast.stream.rules import LineRules, Plan
from streamcast.stream.state import StreamState
from streamcast.stream.watch import Watched


class PlanRunner:
    """Runs plans through the network for one stream: the model, the states, the rules' grid."""

    def __init__(
        self, forecaster: Forecaster, state: StreamState, config: StreamConfig, rules: LineRules
    ) -> None:
        self.forecaster = forecaster
        self.state = state
        self.config = config
        self.grid = rules.grid
        self.transform = rules.transform
        self.cov_loc = rules.cov_loc

    @property
    def net(self):
        """The network that serves: the learner's serving copy when learning online."""
        return self.state.learner.serving if self.state.learner is not None else self.forecaster.net

    def _static(self, runs: list[int], counts: np.ndarray) -> np.ndarray | None:
        """Each row's static inputs: those the model kept for its series (zeros for a new one)."""
        f = self.forecaster
        if not f.spec.static:
            return None
        per_run = static_rows(f.spec, [f.static_values.get(self.state.ids[s]) for s in runs])
        return np.repeat(per_run, counts, axis=0)

    def run(self, plan: Plan) -> dict:
        """Run the plan's rows through the network: every run in one batched call."""
        if len(plan.row_run) == 0:
            return {}
        st, f = self.state, self.forecaster
        run = np.asarray(plan.row_run, dtype=np.int64)
        order = np.argsort(run, kind="stable")  # rows grouped by run, in time order within each
        n_runs = len(plan.run_series)
        counts = np.bincount(run, minlength=n_runs)
        offsets = np.zeros(n_runs + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        loc = np.asarray(plan.row_loc)[order]
        scale = np.asarray(plan.row_scale)[order]
        scaled = (to_model_units(np.asarray(plan.row_value)[order], self.transform) - loc) / scale
        stamps = self.grid.column(np.asarray(plan.row_time, dtype=np.int64)[order], st.time_zone)
        cov = np.asarray(plan.row_cov, dtype=np.float64)[order] if self.cov_loc else None
        # the grid's step is 0 for months, which are not made ahead
        inputs = input_rows(
            scaled, stamps, cov, f.spec, self._static(plan.run_series, counts), self.grid.step
        )
        emit = np.asarray(plan.row_emit)[order]
        # Watching scores every observation, so every one needs its forecast (filled steps do not).
        wanted = emit if self.config.watch is None else np.asarray(plan.row_obs)[order] >= 0
        within = np.arange(len(order)) - np.repeat(offsets[:-1], counts)
        wanted_run = run[order][wanted]
        positions = np.split(within[wanted], np.cumsum(np.bincount(wanted_run, minlength=n_runs))[:-1])
        initial = st.rows(plan.run_series, plan.run_fresh)
        # A micro-batch is a few ticks of many series: one call for all of them (no cache to win).
        naive = f.naive_serving([st.ids[s] for s in plan.run_series])
        outputs, final = run_series(
            self.net,
            inputs,
            offsets,
            positions,
            initial=initial,
            series_batch=4096,
            naive=naive,
            intervals=f.intervals,
        )
        final = tuple(np.asarray(p) for p in final)  # the stream keeps states in numpy (torch's: views)
        last_run = {s: r for r, s in enumerate(plan.run_series)}
        st.set_rows(list(last_run), _rows(final, list(last_run.values())))
        if st.learner is not None and self.config.learn is not None:
            st.learner.observe(plan.run_series, plan.run_fresh, initial, inputs, offsets)
        row_floor = None
        if f.floor_series:  # the id list is built only for a model that bounds some series
            floors = series_floors(f.floor_series, [st.ids[s] for s in plan.run_series])
            row_floor = floors[run[order][wanted]]
        values = f.point_and_quantiles(outputs, loc[wanted], scale[wanted], row_floor)
        watched = None
        if self.config.watch is not None:
            watched, emit = self._watch(plan, order, wanted, values, emit, final, last_run)
            values, watched = values[emit], watched.take(emit)
        rows = np.flatnonzero(wanted)[emit] if watched is not None else np.flatnonzero(emit)  # sorted rows
        obs_index = np.asarray(plan.row_obs, dtype=np.int64)[order][rows]
        back = np.argsort(obs_index, kind="stable")  # input order
        return {
            "obs": obs_index[back],
            "values": values[back],
            "warming": np.asarray(plan.row_warming)[order][rows][back],
            "times": np.asarray(plan.row_time, dtype=np.int64)[order][rows][back],
            "watched": watched.take(back) if watched is not None else None,
        }

    def _watch(self, plan, order, wanted, values, emit, final, last_run) -> tuple[Watched, np.ndarray]:
        """Score the observed rows against their pending forecasts; which of them to emit (the
        --every ones and every anomaly). A series with an anomaly restarts its learning window
        after it, so that the anomaly never becomes a training target."""
        st = self.state
        st.watch.ensure(len(st))
        run = np.asarray(plan.run_series, dtype=np.int64)[np.asarray(plan.row_run, dtype=np.int64)[order]]
        pick = lambda name, dtype=np.float64: np.asarray(getattr(plan, name), dtype=dtype)[order][wanted]  # noqa: E731
        times = pick("row_time", np.int64)
        watched = st.watch.score(
            self.config.watch,
            run[wanted],
            times,
            self.grid.shift(times, np.ones(len(times), dtype=np.int64)),
            pick("row_value"),
            values,
            pick("row_warming", bool),
            pick("row_scale"),
        )
        if st.learner is not None and self.config.learn is not None and watched.anomaly.any():
            flagged = sorted(set(run[wanted][watched.anomaly].tolist()))
            st.learner.restart(flagged, _rows(final, [last_run[s] for s in flagged]))
        return watched, emit[wanted] | watched.anomaly


def _rows(state: tuple[np.ndarray, ...], rows: list[int]) -> tuple[np.ndarray, ...]:
    """These rows of every part of a state."""
    index = np.array(rows, dtype=np.int64)
    return tuple(p[index] for p in state)
