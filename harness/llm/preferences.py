"""Preference pairs from sampled replies ranked by a reward (the RLHF top-k paper, section 3.4).

For each prompt the policy samples ``n`` replies; each is read by the task's interface (titles
grounded to the catalog) and scored by a reward, by default the task's own metric (NDCG@5
against the held-out next items, :func:`recbench.llm.rewards.metric_reward`). All n-choose-2
pairs are ordered by score: the higher-scored reply is chosen, the lower rejected; pairs of equal
score are dropped, and so are pairs of identical text. A reply that grounds to nothing scores 0
and is counted (``ungrounded``). The same pairs feed DPO and the reward model.

Sampling goes through the method's backend, normally a :class:`~recbench.llm.cache.CachedBackend`:
the replies are cached by the backend's fingerprint, the prompt and every decoding parameter
(seed included), so a second recipe building the same pairs samples nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from recbench.errors import ConfigError
from recbench.llm.backend import DecodingParams
from recbench.llm.interface import read_reply


@dataclass
class PreferenceReport:
    """What building the pairs did: counts a result records (``pairs_built``, ``pairs_dropped_tied``, ...)."""

    prompts: int = 0
    samples: int = 0
    ungrounded_samples: int = 0  # replies that grounded to no catalog item (reward as any other reply: 0 by NDCG)
    candidate_pairs: int = 0  # n-choose-2 per prompt
    pairs_built: int = 0
    pairs_dropped_tied: int = 0  # equal scores: no preference
    pairs_dropped_same_text: int = 0  # identical replies scored alike, counted apart from other ties
    prompts_without_pairs: int = 0
    mean_reward: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f"pref_{k}": v for k, v in asdict(self).items()}


def rank_pairs(replies: Sequence[str], scores: Sequence[float], report: PreferenceReport) -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs of all n-choose-2 pairs; ties and identical texts dropped and counted."""
    out = []
    for i, j in itertools.combinations(range(len(replies)), 2):
        report.candidate_pairs += 1
        if replies[i] == replies[j]:
            report.pairs_dropped_same_text += 1
            continue
        if scores[i] == scores[j]:
            report.pairs_dropped_tied += 1
            continue
        out.append((i, j) if scores[i] > scores[j] else (j, i))
    report.pairs_built += len(out)
    return out


def preference_pairs(prompts: Sequence[Any], replies: Sequence[Sequence[str]], rows: Sequence[dict[str, Any]],
                     reward: Callable[[Sequence[str], Sequence[dict[str, Any]]], Sequence[float]]
                     ) -> tuple[list[dict[str, Any]], PreferenceReport]:
    """Pairs of conversational rows ``{"prompt", "chosen", "rejected", "score_chosen", "score_rejected"}``.

    ``prompts`` are :class:`~recbench.llm.prompts.BuiltPrompt` (their ``messages``), ``replies[i]`` the
    sampled replies of prompt i (forced prefix included), ``rows[i]`` its answer row.
    """
    if not (len(prompts) == len(replies) == len(rows)):
        raise ConfigError(f"preference_pairs: {len(prompts)} prompts, {len(replies)} reply lists, {len(rows)} rows")
    report = PreferenceReport(prompts=len(prompts))
    pairs, total = [], 0.0
    for prompt, samples, row in zip(prompts, replies, rows):
        scores = [float(s) for s in reward(list(samples), [row] * len(samples))]
        report.samples += len(samples)
        report.ungrounded_samples += sum(not read_reply(text, row).valid for text in samples)
        total += sum(scores)
        ranked = rank_pairs(samples, scores, report)
        report.prompts_without_pairs += not ranked
        for i, j in ranked:
            pairs.append({"prompt": list(prompt.messages),
                          "chosen": [{"role": "assistant", "content": samples[i]}],
                          "rejected": [{"role": "assistant", "content": samples[j]}],
                          "score_chosen": round(scores[i], 6), "score_rejected": round(scores[j], 6)})
    report.mean_reward = round(total / max(1, report.samples), 6)
    return pairs, report


def sample_replies(backend: Any, prompts: Sequence[Any], n: int, *, max_new_tokens: int, temperature: float = 1.0,
                   top_p: float = 1.0, seed: int = 0) -> list[list[str]]:
    """``n`` sampled replies per prompt (forced prefix included), through ``backend`` (cached when it is)."""
    if n < 2:
        raise ConfigError(f"a preference needs at least 2 samples per prompt, got n={n}")
    if temperature <= 0:
        raise ConfigError(f"sampling n={n} replies needs temperature > 0, got {temperature}")
    out: list[list[str]] = [[] for _ in prompts]
    # one call per forced prefix: the decoding parameters carry it
    for prefix in dict.fromkeys(p.forced_prefix for p in prompts):
        idx = [i for i, p in enumerate(prompts) if p.forced_prefix == prefix]
        params = DecodingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                num_return_sequences=n, seed=seed, forced_prefix=prefix, stop=prompts[idx[0]].stop)
        generations = backend.generate([prompts[i].messages for i in idx], params)
        for i, gens in zip(idx, generations):
            out[i] = [prefix + g.text for g in gens]
    return out
