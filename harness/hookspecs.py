"""The hooks of recbench. Every hook is prefixed ``recbench_``.

Registration hooks receive a ``register`` callable bound to the plugin being called, so the
registry knows where each name came from and can name both sources of a duplicate. pluggy does
not check what hooks return; the registry checks what is passed to ``register`` instead.

Lifecycle hooks are called by the runner for loggers and dashboards; their return values are
ignored. A plugin implements any subset of hooks with ``@recbench.hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from recbench.runner import RunContext

hookspec = pluggy.HookspecMarker("recbench")


@hookspec
def recbench_register_datasets(register: Callable[..., None]) -> None:
    """Register datasets.

    :param register: call ``register(DatasetSpec(...))`` once per dataset
        (:class:`recbench.data.store.DatasetSpec`). Names must be unique across plugins.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_task_kinds(register: Callable[..., None]) -> None:
    """Register task kinds: Python classes that turn a task spec into examples and targets.

    :param register: call ``register(TaskClass)`` with a subclass of :class:`recbench.task.Task`;
        its ``kind`` attribute is the name task specs refer to.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_tasks(register: Callable[..., None]) -> None:
    """Register tasks: declarative specs (name, version, kind, dataset, parameters, metrics).

    :param register: call ``register(spec)`` with a :class:`recbench.task.TaskSpec` or the path
        of a TOML spec file. The spec's ``kind`` must be a registered task kind.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_methods(register: Callable[..., None]) -> None:
    """Register methods.

    :param register: call ``register(MethodClass)`` with a subclass of
        :class:`recbench.method.Method` that sets ``name``, ``description``, ``Config`` (a frozen
        dataclass) and ``contracts`` (the candidate contracts it can answer).
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_metrics(register: Callable[..., None]) -> None:
    """Register metrics.

    :param register: call ``register(Metric(...))`` with a :class:`recbench.metrics.Metric`.
        Task specs name metrics as ``family``, ``family@k`` or ``family@k[subset]``.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_rewards(register: Callable[..., None]) -> None:
    """Register rewards for the on-policy recipes (``grpo``, ``rloo``) and preference builders.

    :param register: call ``register(name, factory)``; ``factory(**args)`` returns a function
        ``reward(replies, rows) -> list[float]`` (see :mod:`recbench.llm.rewards`). Arguments must
        be JSON-ready, so the reward can be rebuilt inside a training subprocess.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_register_executors(register: Callable[..., None]) -> None:
    """Register executors: where ``recbench run --executor NAME`` sends the runs of a sweep.

    :param register: call ``register(ExecutorClass)`` with a subclass of
        :class:`recbench.executors.Executor` that sets ``name``, ``description`` and ``Config`` (a
        frozen dataclass of the ``executor.KEY`` options) and implements ``submit``.
    :return: nothing; called once for every plugin implementing it (all results ignored).
    """


@hookspec
def recbench_run_started(run: RunContext) -> None:
    """Called once before a method is fitted.

    :param run: the run's task name, method name, resolved config, seed and protocol fingerprint.
    :return: ignored. Called for every implementing plugin (all results ignored).
    """


@hookspec
def recbench_batch_scored(run: RunContext, start: int, stop: int, total: int) -> None:
    """Called after each batch of test examples has been predicted and validated.

    :param run: the run (see :func:`recbench_run_started`).
    :param start: index of the batch's first example.
    :param stop: one past the index of the batch's last example.
    :param total: number of test examples in the run.
    :return: ignored. Called for every implementing plugin (all results ignored).
    """


@hookspec
def recbench_stage_progress(run: RunContext, stage: str, done: int, total: int, unit: str, state: str) -> None:
    """Called when a method reports on a stage of its work (see :mod:`recbench.progress`).

    Stages are the method's own (``teacher generation``, ``training lr=0.001``, ...); the runner
    throttles updates to about two a second per stage and always passes a stage's start and end.

    :param run: the run (see :func:`recbench_run_started`).
    :param stage: the stage's name, as in the run's plan.
    :param done: units done so far.
    :param total: units the stage has (it may be corrected once known, e.g. a trainer's steps).
    :param unit: what a unit is (``ex``, ``step``).
    :param state: ``start``, ``update`` or ``end``.
    :return: ignored. Called for every implementing plugin (all results ignored).
    """


@hookspec
def recbench_run_finished(run: RunContext, result: dict[str, Any]) -> None:
    """Called once after the results file has been written.

    :param run: the run (see :func:`recbench_run_started`).
    :param result: the results document as written (see ``docs/results-schema.md``).
    :return: ignored. Called for every implementing plugin (all results ignored).
    """
