"""Rewards of the verbalization paper: a frozen oracle reasoner, the length plateau, the signed outcome.

- ``oracle`` (stage 1, ``r_acc``): each sampled verbalization is put into the reasoner's prompt of
  its example (the :data:`~recbench.llm.verbalization.SLOT` of the answer row's ``reasoner``
  messages, cut to the row's history ``budget`` and counted when cut) and a frozen reasoner
  answers it. ``scoring=choice`` is the paper's equation 4: 1 when the reasoner's greedy answer
  is the target, else 0. ``scoring=prob`` is a dense variant for small models: the reasoner's
  probability of the target among the options (softmax of each option's log-likelihood), so a
  group of verbalizations rarely ties. The reasoner is any toolkit backend: a local model, or
  ``http://HOST:PORT/v1#NAME`` (an OpenAI-compatible server, retried, then a clear error).
  Requests are batched (all replies of a step at once) and cached twice: in memory, so a
  verbalization repeated within or across steps is never scored again, and in the sqlite LLM
  cache, so a rerun asks nothing.
- ``compression`` (``r_len``): the ``length_plateau`` reward on the compression ratio of the
  verbalization as the reasoner reads it (actions executed), against its source's characters.
- ``signed`` (stage 2, equation 7): +1 when the reply's answer is the target, -1 otherwise.

:data:`ORACLE_TIMES` adds up the time the oracle spent and the requests it answered or reused
(read by ``benches/verbalization.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from recbench.errors import RecbenchError
from recbench.llm.backend import DecodingParams, prompt_hash
from recbench.llm.interface import read_reply
from recbench.llm.prompts import whitespace_tokens
from recbench.llm.verbalization import SLOT, realise, truncate_to_budget

ORACLE_TIMES = {"seconds": 0.0, "scored": 0, "reused": 0, "truncated": 0, "fallbacks": 0}
_BACKENDS: dict[tuple[Any, ...], Any] = {}


class OracleError(RecbenchError):
    """The oracle reasoner could not answer (its server down or timing out after the retries)."""


def oracle_backend(model: str, *, retries: int = 4, timeout: float = 120.0, batch_size: int = 8, cache: bool = True) -> Any:
    """The frozen reasoner ``model`` (one per process and settings), behind the sqlite LLM cache."""
    key = (model, retries, timeout, batch_size, cache)
    if key not in _BACKENDS:
        from recbench.llm.models import load_backend

        if model.startswith(("http://", "https://")):
            from recbench.llm.http import OpenAIBackend

            backend: Any = OpenAIBackend.from_url(model, max_retries=retries, timeout=timeout, max_workers=batch_size)
        else:
            backend = load_backend(model, batch_size=batch_size)
        if cache:
            from recbench.data.store import recbench_home
            from recbench.llm.cache import CachedBackend

            backend = CachedBackend(backend, recbench_home() / "llm-cache" / "llm.sqlite")
        _BACKENDS[key] = backend
    return _BACKENDS[key]


def reasoner_messages(text: str, row: dict[str, Any], count_tokens: Any) -> tuple[list[dict[str, str]], bool]:
    """The row's reasoner prompt with ``text`` in its slot, cut to the row's budget; and whether it was cut."""
    text, cut = truncate_to_budget(text, int(row.get("budget", 10**9)), count_tokens)
    return [{"role": m["role"], "content": m["content"].replace(SLOT, text)} for m in row["reasoner"]], cut


class OracleReward:
    """See the module docstring; ``backend`` may be given directly (tests)."""

    def __init__(self, model: str = "smollm2-135m", scoring: str = "choice", max_tokens: int | str = 8,
                 retries: int | str = 4, timeout: float | str = 120.0, batch_size: int | str = 8, backend: Any = None) -> None:
        if scoring not in ("choice", "prob"):
            raise ValueError(f"oracle scoring must be 'choice' (the paper's 0/1) or 'prob' (dense), got {scoring!r}")
        self.model, self.scoring, self.max_tokens = model, scoring, int(max_tokens)
        self.backend = backend if backend is not None else oracle_backend(
            model, retries=int(retries), timeout=float(timeout), batch_size=int(batch_size))
        self.count_tokens = getattr(self.backend, "count_tokens", whitespace_tokens)
        self.memo: dict[str, float] = {}

    def __call__(self, replies: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
        start = time.perf_counter()
        requests = []
        for reply, row in zip(replies, rows):
            text, fallbacks = realise(reply, row)
            messages, cut = reasoner_messages(text, row, self.count_tokens)
            ORACLE_TIMES["truncated"] += int(cut)
            ORACLE_TIMES["fallbacks"] += fallbacks
            requests.append((f"{self.scoring}:{prompt_hash(messages)}", messages, row))
        todo = list({key: (key, m, r) for key, m, r in requests if key not in self.memo}.values())
        ORACLE_TIMES["reused"] += len(requests) - len(todo)
        ORACLE_TIMES["scored"] += len(todo)
        try:
            values = self._score([m for _, m, _ in todo], [r for _, _, r in todo]) if todo else []
        except RecbenchError as exc:
            raise OracleError(f"the oracle reasoner {self.model!r} gave no reward: {exc}") from exc
        self.memo.update(zip([key for key, _, _ in todo], values))
        ORACLE_TIMES["seconds"] += time.perf_counter() - start
        return [self.memo[key] for key, _, _ in requests]

    def _score(self, prompts: list[list[dict[str, str]]], rows: list[dict[str, Any]]) -> list[float]:
        out = []
        for prefix in dict.fromkeys(r["reasoner_prefix"] for r in rows):  # one batch per forced prefix (one in practice)
            index = [i for i, r in enumerate(rows) if r["reasoner_prefix"] == prefix]
            batch = [prompts[i] for i in index]
            if self.scoring == "prob":
                scores = self.backend.score(batch, [rows[i]["continuations"] for i in index], forced_prefix=prefix,
                                            normalize="sum")
                values = [_gold_probability(s, rows[i]["gold"]) for s, i in zip(scores, index)]
            else:
                params = DecodingParams(max_new_tokens=self.max_tokens, temperature=0.0, forced_prefix=prefix,
                                        stop=tuple(rows[index[0]]["stop"]))
                answers = self.backend.generate(batch, params)
                values = [_correct(prefix + a[0].text, rows[i]) for a, i in zip(answers, index)]
            out.extend(zip(index, values))
        return [v for _, v in sorted(out)]


def _gold_probability(scores: Any, gold: Sequence[int]) -> float:
    logits = np.asarray(scores, dtype=np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    return float(sum(probabilities[g] for g in gold))


def _correct(reply: str, row: dict[str, Any]) -> float:
    reading = read_reply(reply, row)
    return float(reading.valid and bool(reading.ranked) and reading.ranked[0] in set(row["gold"]))


def oracle_reward(**args: Any) -> OracleReward:
    return OracleReward(**args)


def compression_reward(low: float | str = 0.3, high: float | str = 0.7):
    """The length plateau on the compression ratio of the realised verbalization (actions executed)."""
    from recbench.llm.rewards import length_plateau_reward

    plateau = length_plateau_reward(float(low), float(high))

    def reward(replies, rows):
        return plateau([realise(reply, row)[0] for reply, row in zip(replies, rows)], rows)

    return reward


def signed_reward():
    """+1 when the reply's answer is right, -1 otherwise (the reasoner's stage-2 reward)."""

    def reward(replies, rows):
        return [2.0 * _correct(reply, row) - 1.0 for reply, row in zip(replies, rows)]

    return reward


REWARDS = {"oracle": oracle_reward, "compression": compression_reward, "signed": signed_reward}
