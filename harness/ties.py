"""Tie sensitivity: how much a metric moves when equal timestamps are ordered another way.

``recbench ties --task fullrank --method most_popular --seeds 100`` runs the method once per tie
seed (0 is the protocol's fixed rule; each other seed is another fixed order of equal timestamps,
see :func:`recbench.data.catalog.tie_key`) and reports the metric under the protocol's rule
against its spread over the seeds. Splits are built in memory and nothing is written to the
results folder: this is a diagnostic, not a leaderboard row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recbench.errors import ConfigError
from recbench.runner import RunRequest, Runner, execute
from recbench.worker import SESSIONS, Limits


@dataclass(frozen=True)
class TieSpread:
    metric: str
    values: list[float]  # one per tie seed, seed 0 first

    @property
    def default(self) -> float:
        return self.values[0]

    def summary(self) -> dict[str, Any]:
        values = np.asarray(self.values)
        return {
            "metric": self.metric, "seeds": len(values), "tie_seed 0 (the protocol)": round(float(values[0]), 4),
            "mean": round(float(values.mean()), 4), "sd": round(float(values.std(ddof=1)), 4) if len(values) > 1 else 0.0,
            "min": round(float(values.min()), 4), "max": round(float(values.max()), 4),
            "percentile of seed 0": round(100.0 * float(np.mean(values <= values[0])), 1),
        }


def tie_spread(runner: Runner, request: RunRequest, seeds: int, metric: str | None = None) -> TieSpread:
    """The method's ``metric`` (default: the task's primary) under tie seeds ``0 .. seeds-1``."""
    values = []
    for tie_seed in range(seeds):
        plan = runner.plan(replace(request, task_settings={**request.task_settings, "tie_seed": tie_seed}))
        metric = metric or plan.task.spec.primary_metric
        data = plan.task.subsample(plan.task.build(plan.catalog))  # in memory: 100 seeds would be 100 split caches
        plan.task.audit(data)
        session = SESSIONS[request.isolation](plan.method_cls, plan.config, request.seed, runner.protected_paths(),
                                              Limits(request.timeout_s, request.max_memory_gb))
        try:
            done = execute(session, data.fit, data.test_inputs, plan.task.contract(), plan.method_cls.name)
        finally:
            session.close()
        evaluation, _ = runner._score(plan, data, done.items, request.seed)
        if metric not in evaluation.summary:
            raise ConfigError(f"--metric {metric!r} is not one of task {plan.task.spec.name!r}'s: {sorted(evaluation.summary)}")
        values.append(float(evaluation.summary[metric]["value"]))
    return TieSpread(metric, values)
