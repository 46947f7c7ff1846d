"""A conformance kit for method plugins: the checks recbench's built-in methods pass.

Use it from a plugin's own test suite::

    from recbench.testing import MethodConformance

    class TestMyMethod(MethodConformance):
        method = MyMethod
        config = MyMethod.Config(epochs=1)   # optional: something fast

pytest then runs, for every task kind the method supports, on a tiny synthetic dataset: the
class registers cleanly, predictions satisfy the task's candidate contract, two runs with the
same seed agree, predictions do not depend on the held-out targets, and fit/predict never get
an object that holds them.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pytest

from recbench.contracts import Validated
from recbench.examples import Predictions, Targets
from recbench.task import Task, TaskData, TaskSpec

TINY = {"n_users": 60, "n_items": 50, "n_interactions": 1500, "seed": 7}

KIND_PARAMS: dict[str, dict[str, Any]] = {
    "fullrank": {"k": 10},
    "rerank": {"n_candidates": 10, "max_history": 20},
    "topk": {"k": 5, "min_history": 5, "horizon": 5, "user_fractions": (0.6, 0.2, 0.2)},
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
    """A built task of ``kind`` on the tiny synthetic catalog."""
    from recbench.manager import load_registry

    registry = load_registry()
    kind_cls = registry.task_kinds.get(kind)
    spec = TaskSpec(
        name=f"tiny-{kind}", version=1, kind=kind, dataset="synthetic-tiny", description="conformance",
        metrics=("hr@1",), primary_metric="hr@1", params={**KIND_PARAMS.get(kind, {}), **(params or {})},
    )
    task = kind_cls(spec)
    return task, task.build(tiny_catalog(kind))


def run_method(method_cls: type, config: Any, seed: int, task: Task, data: TaskData, batch_size: int = 16) -> Validated:
    """Fit and predict like the runner does; return the contract-checked predictions."""
    method = method_cls(config, seed=seed)
    method.fit(data.fit)
    contract = task.contract()
    parts, extras = [], []
    for _, batch in data.test_inputs.batches(batch_size):
        checked = contract.validate(method.predict(batch, contract), batch, data.fit.catalog, method_cls.name)
        parts.append(checked.items)
        extras.extend(checked.extras or [])
    return Validated(np.concatenate(parts), {}, extras or None)


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
        for kind in self._kinds():
            task, data = tiny_task(kind)
            baseline = run_method(self.method, self._config(), 0, task, data).items
            rng = np.random.default_rng(0)
            shuffled = Targets(data.test_targets.indptr, rng.permutation(data.test_targets.items))
            swapped = dataclasses.replace(data, test_targets=shuffled)
            again = run_method(self.method, self._config(), 0, task, swapped).items
            np.testing.assert_array_equal(baseline, again)

    @pytest.mark.parametrize("bad_key", ["definitely_not_an_option"])
    def test_config_rejects_unknown_keys(self, bad_key):
        from recbench.config import build_config
        from recbench.errors import ConfigError

        with pytest.raises(ConfigError, match=bad_key):
            build_config(self.method.Config, {bad_key: 1}, owner=self.method.name)


__all__ = ["MethodConformance", "tiny_task", "tiny_catalog", "run_method", "Predictions"]
