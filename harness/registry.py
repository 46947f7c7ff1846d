"""The registry of datasets, task kinds, tasks, methods, metrics and executors.

pluggy does not look at what plugins pass, so this module does: right type, unique name (a
duplicate names both plugins), and an unknown name answered with close matches and the list.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from recbench.errors import RegistrationError, UnknownNameError

T = TypeVar("T")
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass
class Section(Generic[T]):
    """One kind of registered thing: a mapping of name to (value, plugin that registered it)."""

    kind: str
    check: Callable[[Any], str]  # returns the name of a valid value or raises RegistrationError
    entries: dict[str, T] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def add(self, value: Any, source: str) -> None:
        name = self.check(value)
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise RegistrationError(
                f"plugin {source!r} registered a {self.kind} named {name!r}: names are lower-case "
                "letters, digits, '_', '-' and '.', starting with a letter or digit."
            )
        if name in self.entries:
            raise RegistrationError(
                f"{self.kind} {name!r} is registered twice: by {self.sources[name]!r} and by {source!r}. "
                f"Rename one of them, or uninstall/disable one plugin (RECBENCH_DISABLE_PLUGIN_AUTOLOAD=1)."
            )
        self.entries[name] = value
        self.sources[name] = source

    def get(self, name: str) -> T:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.entries)) from None

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    listing = ", ".join(known) if known else "(none registered)"
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {listing}. See `recbench list {kind}s`."


def _check_class(kind: str, base_path: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        module, _, attr = base_path.partition(":")
        base = getattr(__import__(module, fromlist=[attr]), attr)
        if not (isinstance(value, type) and issubclass(value, base)):
            raise RegistrationError(
                f"a {kind} must be a subclass of {base.__module__}.{base.__qualname__}; got {value!r}."
            )
        value.validate_class()
        return value.kind if kind == "task kind" else value.name

    return check


def _check_instance(kind: str, base_path: str, attr_name: str = "name") -> Callable[[Any], str]:
    def check(value: Any) -> str:
        module, _, attr = base_path.partition(":")
        base = getattr(__import__(module, fromlist=[attr]), attr)
        if not isinstance(value, base):
            raise RegistrationError(
                f"a {kind} must be a {base.__module__}.{base.__qualname__} instance; got {type(value).__name__}: {value!r}."
            )
        return getattr(value, attr_name)

    return check


class Registry:
    """Everything the plugins registered. Built by :func:`recbench.manager.load_registry`."""

    def __init__(self) -> None:
        self.datasets: Section[Any] = Section("dataset", _check_instance("dataset", "recbench.data.store:DatasetSpec"))
        self.task_kinds: Section[Any] = Section("task kind", _check_class("task kind", "recbench.task:Task"))
        self.tasks: Section[Any] = Section("task", _check_instance("task", "recbench.task:TaskSpec"))
        self.methods: Section[Any] = Section("method", _check_class("method", "recbench.method:Method"))
        self.metrics: Section[Any] = Section("metric", _check_instance("metric", "recbench.metrics:Metric"))
        self.executors: Section[Any] = Section("executor", _check_class("executor", "recbench.executors:Executor"))

    def check_tasks(self) -> None:
        """Every task spec must name a registered kind and dataset, and sweep only its kind's parameters."""
        for name, spec in self.tasks.entries.items():
            if spec.kind not in self.task_kinds:
                raise RegistrationError(
                    f"task {name!r} (from {self.tasks.sources[name]!r}) has kind {spec.kind!r}, which is not "
                    f"registered. Known kinds: {', '.join(self.task_kinds.names())}."
                )
            if spec.dataset not in self.datasets:
                raise RegistrationError(
                    f"task {name!r} (from {self.tasks.sources[name]!r}) uses dataset {spec.dataset!r}, which is "
                    f"not registered. Known datasets: {', '.join(self.datasets.names())}."
                )
            params = [f.name for f in dataclasses.fields(self.task_kinds.get(spec.kind).Params)]
            for sweep in spec.param_sweeps:
                if sweep.param not in params:
                    raise RegistrationError(
                        f"task {name!r} (from {self.tasks.sources[name]!r}): param sweep {sweep.title!r} sweeps "
                        f"{sweep.param!r}, which is not a parameter of task kind {spec.kind!r}; set param to one of {params}."
                    )

    def tasks_supported_by(self, method: Any) -> list[str]:
        """Names of the registered tasks whose candidate contract ``method`` answers."""
        return [
            name
            for name, spec in sorted(self.tasks.entries.items())
            if self.task_kinds.get(spec.kind).supported_by(method)
        ]
