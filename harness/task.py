"""Tasks: a declarative spec (``tasks/*.toml``) plus a task kind (Python) that builds examples.

A spec names its kind, dataset, version, metrics and parameters::

    name = "fullrank"
    version = 1
    kind = "fullrank"
    dataset = "ml-100k"
    description = "Leave-one-out next-item prediction over the full catalog"
    primary_metric = "ndcg@10"
    metrics = ["hr@10", "ndcg@10", "mrr@20"]
    [params]
    k = 20

A task kind builds, from a catalog, a :class:`TaskData`: the :class:`~recbench.examples.FitData`
and test inputs a method gets, and the test targets only the runner gets.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recbench.ablations import Ablation
from recbench.config import build_config, config_to_dict, option
from recbench.contracts import CONTRACT_KINDS, Contract
from recbench.data.catalog import TIE_RULE, Catalog
from recbench.errors import ConfigError, RegistrationError
from recbench.examples import ExampleSet, FitData, Targets
from recbench.hashing import stable_hash
from recbench.param_sweeps import ParamSweep


@dataclass(frozen=True)
class TaskSpec:
    name: str
    version: int
    kind: str
    dataset: str
    description: str
    metrics: tuple[str, ...]
    primary_metric: str
    params: dict[str, Any] = field(default_factory=dict)
    filters: tuple[dict[str, Any], ...] = ()
    reference: str | None = None  # default reference row of the leaderboard's relative column
    relative_metrics: tuple[str, ...] = ()  # metrics with a Δ% column (default: the primary metric)
    ablations: tuple[Ablation, ...] = ()  # extra leaderboard views on the same results (recbench.ablations)
    param_sweeps: tuple[ParamSweep, ...] = ()  # leaderboard figures of a metric against a task parameter (recbench.param_sweeps)
    path: str | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> TaskSpec:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RegistrationError(f"task spec {str(path)!r} cannot be read: {exc}") from exc
        return cls.from_dict(raw, path=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: str | None = None) -> TaskSpec:
        where = path or "task spec"
        known = {f.name for f in fields(cls)} - {"path"}
        unknown = set(raw) - known
        if unknown:
            raise RegistrationError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(known)}.")
        missing = [k for k in ("name", "version", "kind", "dataset", "metrics", "primary_metric") if k not in raw]
        if missing:
            raise RegistrationError(f"{where}: missing required key(s) {missing}.")
        if raw["primary_metric"] not in raw["metrics"]:
            raise RegistrationError(f"{where}: primary_metric {raw['primary_metric']!r} is not in metrics.")
        stray = [m for m in raw.get("relative_metrics", ()) if m not in raw["metrics"]]
        if stray:
            raise RegistrationError(f"{where}: relative_metrics {stray} are not in metrics {raw['metrics']}.")
        ablations = tuple(Ablation.from_dict(a, where) for a in raw.get("ablations", ()))
        stray = sorted({m for a in ablations for m in a.metrics} - set(raw["metrics"]))
        if stray:
            raise RegistrationError(f"{where}: ablation metrics {stray} are not in metrics {raw['metrics']}.")
        sweeps = tuple(ParamSweep.from_dict(s, where) for s in raw.get("param_sweeps", ()))
        stray = sorted({s.metric for s in sweeps if s.metric} - set(raw["metrics"]))
        if stray:
            raise RegistrationError(f"{where}: param_sweeps metrics {stray} are not in metrics {raw['metrics']}.")
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            kind=raw["kind"],
            dataset=raw["dataset"],
            description=raw.get("description", ""),
            metrics=tuple(raw["metrics"]),
            primary_metric=raw["primary_metric"],
            params=dict(raw.get("params", {})),
            filters=tuple(raw.get("filters", ())),
            reference=raw.get("reference"),
            relative_metrics=tuple(raw.get("relative_metrics", ())),
            ablations=ablations,
            param_sweeps=sweeps,
            path=path,
        )


@dataclass(frozen=True)
class TaskData:
    """A built task. ``fit`` and ``test_inputs`` may go to a method; ``test_targets`` never do.

    ``subsets`` maps a subset name (e.g. ``discovery``) to a boolean mask over test examples, for
    metrics written ``family@k[subset]``. ``outcome`` holds per-example arrays some metrics need
    (e.g. ``propensity`` for IPS).
    """

    fit: FitData
    test_inputs: ExampleSet
    test_targets: Targets
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    outcome: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommonParams:
    """Parameters every task kind accepts, beside its own ``Params``."""

    max_test_examples: int | None = option(
        None, "evaluate on this many test examples, drawn without replacement with a fixed seed (smoke runs of slow methods); None: all"
    )
    tie_seed: int = option(
        0, "order of equal timestamps within a user: 0 is the protocol's fixed rule, another seed another fixed order "
           "(recbench ties measures a metric's spread across them)"
    )

    def __post_init__(self) -> None:
        if self.tie_seed < 0:
            raise ValueError(f"tie_seed must be 0 or more, got {self.tie_seed}")
        if self.max_test_examples is not None and self.max_test_examples < 1:
            raise ValueError(f"max_test_examples must be at least 1 (or None for all), got {self.max_test_examples}")


def check_minimums(params: Any, **minimums: int) -> None:
    """For a ``Params.__post_init__``: each named parameter (unless None) is at least its minimum.

    Raises ValueError, which the task's config loader reports with the task's name."""
    for name, low in minimums.items():
        value = getattr(params, name)
        if value is not None and value < low:
            default = next(f.default for f in fields(params) if f.name == name)
            raise ValueError(f"{name} must be at least {low}, got {value}; e.g. --set task.{name}={default}")


SUBSAMPLE_SEED = 0  # one fixed draw, so every method of a smoke table sees the same examples


class Task:
    """Base class of task kinds. Subclasses set the class attributes and implement :meth:`build`."""

    kind: ClassVar[str]
    description: ClassVar[str]
    contract_kind: ClassVar[str]
    candidate_table: ClassVar[str] = "items"  # what predicted codes refer to (a catalog side table otherwise)
    Params: ClassVar[type]  # frozen dataclass of the kind's parameters, with defaults
    # how LLM methods prompt for an example and read a reply: a recbench.llm.interface.TaskInterface
    # subclass, built by llm_for() and handed to methods as FitData.llm (None: no LLM method runs)
    llm_interface: ClassVar[type | None] = None

    def __init__(self, spec: TaskSpec, overrides: dict[str, Any] | None = None) -> None:
        self.spec = spec
        common = {f.name for f in fields(CommonParams)}
        layers = [spec.params, overrides or {}]
        owner = f"task {spec.name!r} params"
        self.common = build_config(CommonParams, *[{k: v for k, v in d.items() if k in common} for d in layers], owner=owner)
        self.params = build_config(self.Params, *[{k: v for k, v in d.items() if k not in common} for d in layers], owner=owner)

    @classmethod
    def validate_class(cls) -> None:
        for attr in ("kind", "description", "contract_kind", "Params"):
            if not hasattr(cls, attr):
                raise RegistrationError(f"task kind {cls.__qualname__} must set class attribute {attr!r}.")
        if cls.contract_kind not in CONTRACT_KINDS:
            raise RegistrationError(
                f"task kind {cls.kind!r}: contract_kind {cls.contract_kind!r} is not one of {CONTRACT_KINDS}."
            )
        if not is_dataclass(cls.Params):
            raise RegistrationError(f"task kind {cls.kind!r}: Params must be a dataclass.")

    def contract(self) -> Contract:
        raise NotImplementedError

    def build(self, catalog: Catalog) -> TaskData:
        raise NotImplementedError

    def llm_for(self, view: Any) -> Any:
        """This task's LLM interface for a catalog view (``FitData.llm``), or None."""
        return None if self.llm_interface is None else self.llm_interface(view, self.params)

    def param_values(self) -> dict[str, Any]:
        """The kind's parameters plus the common ones that are set, as recorded in results."""
        values = config_to_dict(self.params)
        if self.common.max_test_examples is not None:
            values["max_test_examples"] = self.common.max_test_examples
        if self.common.tie_seed:
            values["tie_seed"] = self.common.tie_seed
        return values

    def check_catalog(self, catalog: Catalog) -> None:
        """Check the parameters against the data before anything is built or fitted. The base class
        checks that a list length ``k`` fits the catalog; kinds may add checks."""
        k = getattr(self.params, "k", None)
        if self.candidate_table == "items" and isinstance(k, int) and k > catalog.n_items:
            raise ConfigError(
                f"task {self.spec.name!r}: k={k} asks for more items per example than dataset {catalog.name!r} has "
                f"({catalog.n_items:,}); set --set task.k=N with N at most {catalog.n_items:,}."
            )

    def subsample(self, data: TaskData) -> TaskData:
        """Keep ``max_test_examples`` test examples (a seeded draw, in their original order).

        Every build passes here, so a build without test examples stops here, before any fit."""
        n, keep = len(data.test_inputs), self.common.max_test_examples
        if n == 0:
            catalog = data.fit.catalog
            raise ConfigError(
                f"task {self.spec.name!r} built no test examples from dataset {catalog.name!r} ({len(catalog.users):,} users, "
                f"{len(data.fit.train):,} training interactions) with parameters {config_to_dict(self.params)}; use a larger "
                "dataset or loosen the parameters (--set task.KEY=VALUE; `recbench list tasks`)."
            )
        if keep is None or keep >= n:
            return data
        rows = np.sort(np.random.default_rng(SUBSAMPLE_SEED).choice(n, size=keep, replace=False))
        return replace(
            data,
            test_inputs=data.test_inputs.take(rows),
            test_targets=data.test_targets.take(rows),
            subsets={name: mask[rows] for name, mask in data.subsets.items()},
            outcome={name: values[rows] for name, values in data.outcome.items()},
            stats={**data.stats, "test_examples_before_subsample": n},
        )

    def audit(self, data: TaskData) -> None:
        """Raise :class:`~recbench.errors.TargetLeakError` if test targets reached method inputs.

        The default checks item targets against training interactions and test histories; kinds
        whose targets are not catalog items (e.g. artworks) override it.
        """
        from recbench.runner import audit_no_target_leak

        audit_no_target_leak(data.fit, data.test_inputs, data.test_targets)

    def report(self, data: TaskData, ranked: np.ndarray, per_example: dict[str, np.ndarray], out_dir: Path) -> dict[str, Any]:
        """Task-specific tables for the results file (e.g. accuracy by option index). Plots may be
        written into ``out_dir``; return their paths relative to it under the key ``plots``."""
        return {}

    def ceiling(self, data: TaskData) -> dict[str, np.ndarray] | None:
        """Per-example expected values of the task's metrics under a Bayes-optimal policy, when the
        data come from a simulator that knows choice probabilities; ``None`` otherwise."""
        return None

    @classmethod
    def supported_by(cls, method: type) -> bool:
        """Whether ``method`` answers this kind's contract over this kind's candidate table."""
        return cls.contract_kind in method.contracts and cls.candidate_table in method.candidate_tables

    def ids(self, catalog: Catalog) -> np.ndarray:
        """Original ids of the codes this task's predictions use (items, or a side table's rows)."""
        frame = catalog.items if self.candidate_table == "items" else catalog.tables[self.candidate_table]
        return frame[getattr(self.contract(), "id_column", "item_id")].to_numpy(dtype=object)

    def split_description(self) -> dict[str, Any]:
        """The split, masking and sampling rules: overridden by kinds to describe themselves."""
        return {}

    def protocol(self, catalog: Catalog) -> dict[str, Any]:
        """Everything that makes two results comparable, and its fingerprint."""
        self.check_catalog(catalog)  # the runner's first use of the data: parameters that cannot fit stop here
        protocol = {
            "task": self.spec.name,
            "task_version": self.spec.version,
            "kind": self.kind,
            "dataset": catalog.name,
            "dataset_hash": catalog.content_hash(),
            "filters": [{k: v for k, v in f.items() if k != "removed"} for f in catalog.provenance.get("filters", [])],
            "tie_rule": TIE_RULE,
            "tie_seed": self.common.tie_seed,
            "params": config_to_dict(self.params),
            "contract": self.contract().describe(),
            "split": self.split_description(),
        }
        if self.common.max_test_examples is not None:  # absent otherwise: full-test fingerprints stay as they were
            protocol["test_subsample"] = {"max_test_examples": self.common.max_test_examples, "seed": SUBSAMPLE_SEED}
        protocol["fingerprint"] = stable_hash(protocol)
        return protocol


def check_override_keys(overrides: dict[str, Any], valid: set[str]) -> None:
    unknown = set(overrides) - valid
    if unknown:
        raise ConfigError(f"unknown task parameter(s) {sorted(unknown)}; valid: {sorted(valid)}.")
