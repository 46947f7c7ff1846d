"""The interface every LLM backend implements: chat prompts in, generations or log-likelihoods out.

A backend is anything with a ``fingerprint`` and the two methods of :class:`Backend`: the local
transformers model (:mod:`recbench.llm.local`), an OpenAI-compatible server
(:mod:`recbench.llm.http`), or the sqlite cache wrapping either (:mod:`recbench.llm.cache`).
This module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from recbench.errors import ConfigError, RecbenchError

Prompt = list[dict[str, str]]
Normalize = Literal["sum", "mean"]
ROLES = ("system", "user", "assistant")


class ModelError(RecbenchError):
    """A model could not be resolved, fetched, converted or loaded."""


@dataclass(frozen=True)
class DecodingParams:
    """Every decoding parameter, explicit, so a result records exactly how text was produced."""

    max_new_tokens: int = 64
    temperature: float = 0.0  # 0.0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = disabled
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    seed: int = 0
    forced_prefix: str = ""  # the assistant turn starts with it; generation continues after it
    stop: tuple[str, ...] = ()  # generation ends at the first; the stop string is not part of the text

    def __post_init__(self) -> None:
        problems = []
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens} (need >= 1)")
        if self.temperature < 0:
            problems.append(f"temperature={self.temperature} (need >= 0; 0 means greedy)")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p} (need 0 < top_p <= 1)")
        if self.top_k < 0:
            problems.append(f"top_k={self.top_k} (need >= 0; 0 disables it)")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty={self.repetition_penalty} (need > 0; 1.0 disables it)")
        if self.num_return_sequences < 1:
            problems.append(f"num_return_sequences={self.num_return_sequences} (need >= 1)")
        if self.temperature == 0 and self.num_return_sequences > 1:
            problems.append("num_return_sequences > 1 with temperature=0 (greedy has one answer; set temperature > 0)")
        if problems:
            raise ConfigError(f"DecodingParams: invalid {'; '.join(problems)}.")
        # a list would make the frozen dataclass unhashable and its JSON record ambiguous
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the parameters (for results files and cache keys)."""
        out = dataclasses.asdict(self)
        out["stop"] = list(self.stop)
        return out


@dataclass(frozen=True)
class Generation:
    text: str  # generated text after the forced prefix (prefix not included)
    n_tokens: int


@runtime_checkable
class Backend(Protocol):
    fingerprint: str  # identifies model weights + tokenizer + chat template (for caches)

    def generate(self, prompts: Sequence[Prompt], params: DecodingParams) -> list[list[Generation]]:
        """One list of ``params.num_return_sequences`` generations per prompt, in prompt order."""
        ...

    def score(
        self,
        prompts: Sequence[Prompt],
        continuations: Sequence[Sequence[str]],
        *,
        forced_prefix: str = "",
        normalize: Normalize = "mean",
    ) -> list[np.ndarray]:
        """Per prompt, the log-likelihood of each continuation after prompt + assistant start + prefix.

        ``"sum"`` is the total log-probability; ``"mean"`` divides it by the continuation's tokens.
        """
        ...


def check_prompts(prompts: Sequence[Prompt], where: str) -> None:
    """Raise :class:`ConfigError` naming the first malformed chat message."""
    if isinstance(prompts, (str, dict)):
        raise ConfigError(
            f"{where}: prompts must be a list of chat prompts (lists of messages), got {type(prompts).__name__}."
        )
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, list) or not prompt:
            raise ConfigError(f"{where}: prompt {i} must be a non-empty list of {{'role', 'content'}} messages.")
        for j, message in enumerate(prompt):
            valid = isinstance(message, dict) and message.get("role") in ROLES
            if not valid or not isinstance(message.get("content"), str):
                raise ConfigError(
                    f"{where}: prompt {i} message {j} is {message!r}; each message needs role in {ROLES} "
                    "and a string content."
                )


def check_normalize(normalize: str, where: str) -> None:
    if normalize not in ("sum", "mean"):
        raise ConfigError(f"{where}: normalize={normalize!r}; use 'sum' (total log-prob) or 'mean' (per token).")


def prompt_hash(prompt: Prompt) -> str:
    """A stable digest of a chat prompt's messages (role and content, in order)."""
    payload = json.dumps([[m["role"], m["content"]] for m in prompt], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
