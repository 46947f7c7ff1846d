"""A conformance kit for method plugins: the checks recbench's built-in methods pass.

Use it from a plugin's own test suite::

    from recbench.testing import MethodConformance

    class TestMyMethod(MethodConformance):
        method = MyMethod
        config = MyMethod.Config(epochs=1)   # optional: something fast

pytest then runs, for every task kind the method supports, on a tiny synthetic dataset: the
class registers cleanly, predictions satisfy the task's candidate contract, two runs with the
same seed agree, fit/predict never get an object that holds the targets, and the target checks:
predictions stay the same when the only targets in memory are decoys, nothing writes to them, and
no recbench cache or results file is touched. The method runs through the runner's own fit and
predict loop (:func:`recbench.runner.execute`), in this process, so that a method reaching for
targets (through the call stack, the garbage collector or recbench's files) is caught here.
"""

from __future__ import annotations

import dataclasses
import gc
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pytest

from recbench.contracts import Validated
from recbench.examples import Predictions, Targets
from recbench.runner import execute, prepare_task_data, protected_paths, targets_digest
from recbench.task import Task, TaskData, TaskSpec
from recbench.worker import IN_PROCESS, SESSIONS, WORKER

TINY = {"n_users": 60, "n_items": 50, "n_interactions": 1500, "seed": 7}

KIND_PARAMS: dict[str, dict[str, Any]] = {
    "fullrank": {"k": 10},
    "rerank": {"n_candidates": 10, "max_history": 20},
    # min_liked_disliked=0: the tiny catalog has few ratings below 3, and the paper's 5 would leave 3 test users
    "topk": {"k": 5, "min_history": 5, "horizon": 5, "user_fractions": (0.6, 0.2, 0.2), "min_liked_disliked": 0},
    "artwork": {"n_train": 2000, "n_valid": 300, "n_test": 800},
}


@lru_cache(maxsize=None)
def tiny_catalog(kind: str = "fullrank"):
    """The tiny synthetic catalog; for the artwork kind, the same with simulated artworks."""
    if kind == "artwork":
        from recbench.plugins.datasets.artwork_data import load_artwork_tiny

        return load_artwork_tiny(None)
    from recbench.plugins.datasets.synthetic import make_synthetic

    return make_synthetic(**TINY)


def tiny_task(kind: str, params: dict[str, Any] | None = None) -> tuple[Task, TaskData]:
    """A built task of ``kind`` on the tiny synthetic catalog, through the runner's split cache."""
    task = _tiny_spec_task(kind, params)
    catalog = tiny_catalog(kind)
    return task, prepare_task_data(task, catalog, task.protocol(catalog))


def _tiny_spec_task(kind: str, params: dict[str, Any] | None = None) -> Task:
    from recbench.manager import load_registry

    kind_cls = load_registry().task_kinds.get(kind)
    spec = TaskSpec(
        name=f"tiny-{kind}", version=1, kind=kind, dataset="synthetic-tiny", description="conformance",
        metrics=("hr@1",), primary_metric="hr@1", params={**KIND_PARAMS.get(kind, {}), **(params or {})},
    )
    return kind_cls(spec)


def run_method(method_cls: type, config: Any, seed: int, task: Task, data: TaskData, batch_size: int = 16,
               isolation: str = IN_PROCESS) -> Validated:
    """Fit and predict through the runner's own loop; return the contract-checked predictions.

    In process by default (a plugin's test fakes stay in effect); ``isolation="worker"`` runs the
    method in a worker process as ``recbench run`` does. Either way recbench's caches and results
    are off limits to the method (:mod:`recbench.worker`).
    """
    from recbench.results import ResultStore

    protected = protected_paths(ResultStore().root)
    session = SESSIONS[isolation](method_cls, config if config is not None else method_cls.Config(), seed, protected)
    try:
        done = execute(session, data.fit, data.test_inputs, task.contract(), method_cls.name, batch_size=batch_size)
    finally:
        session.close()
    return Validated(done.items, {}, done.extras if any(done.extras) else None)


def decoy_task(kind: str, seed: int) -> tuple[Task, TaskData]:
    """A tiny task whose test targets are replaced by a random draw, built from a catalog that is
    then dropped: the decoys are the only test targets left in this process's memory."""
    tiny_catalog.cache_clear()
    task = _tiny_spec_task(kind)
    catalog = tiny_catalog.__wrapped__(kind)
    data = task.subsample(task.build(catalog))
    del catalog
    targets = data.test_targets
    decoys = Targets(targets.indptr.copy(), np.random.default_rng(seed).permutation(targets.items))
    data = dataclasses.replace(data, test_targets=decoys)
    gc.collect()
    return task, data


def _contains_targets(obj: Any, seen: set[int] | None = None, depth: int = 0) -> bool:
    """Whether ``obj`` holds a :class:`Targets` anywhere among its attributes (bounded search)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth > 4:
        return False
    seen.add(id(obj))
    if isinstance(obj, Targets):
        return True
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)[:50]
    else:
        return False
    return any(_contains_targets(child, seen, depth + 1) for child in children)


class MethodConformance:
    """Mixin of pytest checks. Set ``method`` (the class) and optionally ``config`` and ``kinds``."""

    method: ClassVar[type]
    config: ClassVar[Any] = None
    kinds: ClassVar[tuple[str, ...] | None] = None  # default: every built-in kind the method supports
    # the target check's reference run: in a worker process (nothing of the runner's in memory), or,
    # when False, in this process with decoy targets (for tests whose fakes are monkeypatches here)
    isolated_reference: ClassVar[bool] = True

    def _kinds(self) -> list[str]:
        from recbench.manager import load_registry

        registry = load_registry()
        wanted = self.kinds or tuple(KIND_PARAMS)
        return [k for k in wanted if registry.task_kinds.get(k).supported_by(self.method)]

    def _config(self) -> Any:
        return self.config if self.config is not None else self.method.Config()

    def test_class_registers_cleanly(self):
        self.method.validate_class()
        assert self._kinds(), f"{self.method.name} supports none of the built-in task kinds"

    def test_valid_predictions_on_tiny_data(self):
        for kind in self._kinds():
            task, data = tiny_task(kind)
            checked = run_method(self.method, self._config(), 0, task, data)
            assert checked.items.shape[0] == len(data.test_inputs), kind

    def test_deterministic_under_seed(self):
        for kind in self._kinds():
            task, data = tiny_task(kind)
            first = run_method(self.method, self._config(), 3, task, data).items
            second = run_method(self.method, self._config(), 3, task, data).items
            np.testing.assert_array_equal(first, second, err_msg=f"{self.method.name} on {kind}: same seed, different predictions")

    def test_never_receives_targets(self):
        for kind in self._kinds():
            task, data = tiny_task(kind)
            task.audit(data)
            received: list[Any] = []
            method = self.method(self._config(), seed=0)
            fit, predict = method.fit, method.predict
            method.fit = lambda d: (received.append(d), fit(d))[1]  # type: ignore[method-assign]
            method.predict = lambda e, c: (received.append(e), predict(e, c))[1]  # type: ignore[method-assign]
            method.fit(data.fit)
            method.predict(data.test_inputs, task.contract())
            assert not any(_contains_targets(obj) and obj is not data.fit for obj in received)
            assert not _contains_targets(data.fit.valid), "validation inputs must not embed targets"
            assert not any(obj is data.test_targets for obj in received)

    def test_predictions_do_not_depend_on_test_targets(self):
        """A reference run with nothing of the runner's to read (in a worker process, or with decoy
        targets in memory) and a run in this process beside the real targets, the full catalog and the
        split cache on disk must agree; the targets must come back unchanged, and a touched recbench
        file raises TargetLeakError."""
        for kind in self._kinds():
            if self.isolated_reference:
                task, data = tiny_task(kind)
                reference = run_method(self.method, self._config(), 0, task, data, isolation=WORKER).items
            else:
                task, data = decoy_task(kind, seed=1)
                reference = run_method(self.method, self._config(), 0, task, data).items
            del task, data
            task, data = tiny_task(kind)
            before = targets_digest(data)
            real = run_method(self.method, self._config(), 0, task, data).items
            assert targets_digest(data) == before, f"{self.method.name} on {kind} wrote to the test targets"
            np.testing.assert_array_equal(
                reference, real,
                err_msg=f"{self.method.name} on {kind}: predictions beside the test targets and catalog differ from "
                        "the reference run's, so the method reads them (the call stack, the garbage collector or a "
                        "reference).",
            )

    @pytest.mark.parametrize("bad_key", ["definitely_not_an_option"])
    def test_config_rejects_unknown_keys(self, bad_key):
        from recbench.config import build_config
        from recbench.errors import ConfigError

        with pytest.raises(ConfigError, match=bad_key):
            build_config(self.method.Config, {bad_key: 1}, owner=self.method.name)


__all__ = ["MethodConformance", "tiny_task", "tiny_catalog", "run_method", "decoy_task", "Predictions"]
