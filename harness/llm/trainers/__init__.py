"""The trainer registry: one small builder per algorithm, each with a typed config of its own options.

A :class:`TrainerSpec` names an algorithm, its ``Config`` (a frozen dataclass holding only that
algorithm's options, e.g. DPO's ``beta`` or GRPO's ``num_generations``), the columns its training
rows need, and ``build(ctx)``, which returns a TRL trainer for a LoRA-wrapped model.
:mod:`recbench.llm.training` loads the model, applies LoRA, calls the builder, trains and saves
the checkpoint, for every algorithm alike: adding one is one builder here, no branch there.

Built-ins: ``sft`` (TRL ``SFTTrainer``), ``dpo`` (``DPOTrainer``), ``grpo`` (``GRPOTrainer``)
and ``rloo`` (``RLOOTrainer``) with rewards from :mod:`recbench.llm.rewards`, ``reward_model``
(TRL ``RewardTrainer``, a sequence-classification head), ``ppo`` (recbench's own: TRL 1.16 has
no PPO; clipped ratio, GAE from a value head, KL to the reference) and ``rlso`` (LangPTune's
paired squared loss, in no library).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recbench.errors import ConfigError, RegistrationError, UnknownNameError


@dataclass
class BuildContext:
    """What a builder gets: the LoRA-wrapped model, its tokenizer, the rows as a ``datasets.Dataset``,
    the keyword arguments every TRL config shares (``args``), and the algorithm's own config."""

    model: Any
    tokenizer: Any
    dataset: Any
    args: dict[str, Any]
    config: Any


@dataclass(frozen=True)
class TrainerSpec:
    name: str
    Config: type
    build: Callable[[BuildContext], Any]
    row_keys: tuple[str, ...]  # the columns every training row must have
    trains_new_tokens: bool = True  # False where a reference model shares the embedding rows (DPO)
    description: str = ""

    def config(self, values: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(self.Config)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"trainer {self.name!r}: unknown option(s) {sorted(unknown)}; it takes {sorted(known)}.")
        return self.Config(**values)

    def check_rows(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            raise ConfigError(f"trainer {self.name!r}: no training rows; the recipe built none from the task's examples.")
        missing = [k for k in self.row_keys if k not in rows[0]]
        if missing:
            raise ConfigError(f"trainer {self.name!r}: training rows lack {missing}; each row needs {list(self.row_keys)}.")


TRAINERS: dict[str, TrainerSpec] = {}


def register_trainer(spec: TrainerSpec) -> None:
    if spec.name in TRAINERS and TRAINERS[spec.name] is not spec:
        raise RegistrationError(f"trainer {spec.name!r} is already registered; pick another name.")
    if not (dataclasses.is_dataclass(spec.Config) and spec.Config.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        raise RegistrationError(f"trainer {spec.name!r}: Config must be a frozen dataclass.")
    TRAINERS[spec.name] = spec


def get_trainer(name: str) -> TrainerSpec:
    _load_builtins()
    spec = TRAINERS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, TRAINERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown trainer {name!r}.{hint} Registered: {', '.join(sorted(TRAINERS))}.")
    return spec


def _load_builtins() -> None:
    from recbench.llm.trainers import dpo, grpo, ppo, reward_model, rlso, sft  # noqa: F401  (each registers itself)
