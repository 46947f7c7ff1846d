"""A trained reward model (:mod:`recbench.llm.trainers.reward_model`) as a reward, and its held-out accuracy.

``reward_model:checkpoint=FOLDER`` is a reward of :mod:`recbench.llm.rewards`: each reply is
scored by the sequence-classification head on the chat-templated prompt plus the reply, exactly
as the reward trainer saw its pairs. The prompt comes from the answer row's ``rm_prompt`` key
(the prompt's chat messages, which a recipe puts there). The checkpoint is verified before it is
loaded: every file against the sha256 its marker recorded; a missing or corrupt one is an error
naming the folder (the checkpoint cache then rebuilds it on the next training run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from recbench.errors import ConfigError, RecbenchError
from recbench.metrics import ratio_interval


class RewardModelError(RecbenchError):
    """A reward model checkpoint that is missing, corrupt, or does not match the policy's tokenizer."""


def verify_checkpoint(folder: str | Path) -> Path:
    """``folder`` if it is a complete reward-model checkpoint whose files match their recorded sha256."""
    from recbench.llm.models import MARKER, file_sha256
    from recbench.llm.training import PARENT_FILE

    path = Path(folder)
    try:
        marker = json.loads((path / MARKER).read_text())
        parent = json.loads((path / PARENT_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise RewardModelError(f"reward model checkpoint {path} is missing or incomplete ({exc}); train it again "
                               "(the recipe's checkpoint cache rebuilds it).") from exc
    for name, meta in marker.get("files", {}).items():
        file = path / name
        if not file.is_file() or file_sha256(file) != meta["sha256"]:
            raise RewardModelError(f"reward model checkpoint {path}: {name} is missing or differs from its recorded "
                                   "sha256 (corrupt); delete the folder and train it again.")
    if parent.get("task_type") != "SEQ_CLS":
        raise RewardModelError(f"checkpoint {path} is not a reward model (it holds a {parent.get('task_type', 'CAUSAL_LM')} model).")
    return path


@lru_cache(maxsize=2)
def load_reward_model(folder: str) -> tuple[Any, Any]:
    """The verified reward model of ``folder`` (eval mode, CPU or the first GPU) and its tokenizer."""
    import torch

    from recbench.llm.training import load_model

    path = verify_checkpoint(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tokenizer = load_model(path, torch.float32 if device == "cpu" else torch.bfloat16, "SEQ_CLS")
    return model.to(device).eval(), tokenizer


def base_vocab(tokenizer: Any) -> dict[str, int]:
    """The vocabulary without the plain tokens a recipe added (e.g. ``<option>``): what the base model reads."""
    added = {t.content for t in tokenizer.added_tokens_decoder.values() if not t.special}
    return {token: i for token, i in tokenizer.get_vocab().items() if token not in added}


def same_tokenizer(policy_tokenizer: Any, reward_folder: str | Path) -> None:
    """An error before training when the reward model reads text with another tokenizer than the policy's."""
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(verify_checkpoint(reward_folder))
    mine, other = base_vocab(policy_tokenizer), base_vocab(theirs)
    if mine != other or policy_tokenizer.chat_template != theirs.chat_template:
        differ = len(set(mine.items()) ^ set(other.items()))
        raise RewardModelError(
            f"the reward model {Path(reward_folder).name} was trained on another base tokenizer than the policy's "
            f"({len(other)} against {len(mine)} tokens, {differ} entries differ, chat templates "
            f"{'equal' if policy_tokenizer.chat_template == theirs.chat_template else 'differ'}); train the reward "
            "model on the policy's base model.")


def score_texts(folder: str, conversations: Sequence[list[dict[str, str]]], *, batch_size: int = 8) -> np.ndarray:
    """The reward model's scalar for each whole conversation (prompt messages plus the assistant reply)."""
    import torch

    model, tokenizer = load_reward_model(str(folder))
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    out = []
    for lo in range(0, len(texts), batch_size):
        batch = tokenizer(texts[lo: lo + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits
        out.extend(logits[:, 0].float().cpu().tolist())
    return np.asarray(out, dtype=np.float64)


def reward_model_reward(checkpoint: str = "", scale: str = "1.0"):
    """The reward ``reward_model:checkpoint=FOLDER``: the head's score of each reply, times ``scale``."""
    if not checkpoint:
        raise ConfigError("reward 'reward_model' needs checkpoint=FOLDER (a reward_model checkpoint)")
    verify_checkpoint(checkpoint)  # a missing or corrupt checkpoint fails before any sampling
    factor = float(scale)

    def reward(replies: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[float]:
        if any("rm_prompt" not in row for row in rows):
            raise ConfigError("reward 'reward_model' scores prompt plus reply: answer rows need 'rm_prompt' (the prompt's messages)")
        conversations = [list(row["rm_prompt"]) + [{"role": "assistant", "content": text}] for text, row in zip(replies, rows)]
        return (factor * score_texts(checkpoint, conversations)).tolist()

    return reward


def pairwise_accuracy(folder: str, pairs: Sequence[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy of the reward model on preference pairs (r_chosen > r_rejected), with a 95% interval that
    resamples prompts (:func:`prompt_bootstrap`)."""
    if not pairs:
        return {"rm_heldout_pairs": 0}
    # the n-choose-2 pairs of a prompt share its n replies: each conversation is scored once
    sides = [[list(p["prompt"]) + list(p[side]) for p in pairs] for side in ("chosen", "rejected")]
    unique = {json.dumps(c, sort_keys=True): c for c in sides[0] + sides[1]}
    score = dict(zip(unique, score_texts(folder, list(unique.values()))))
    chosen, rejected = (np.array([score[json.dumps(c, sort_keys=True)] for c in side]) for side in sides)
    correct = (chosen > rejected).astype(np.float64)
    prompts = [json.dumps(p["prompt"], sort_keys=True) for p in pairs]
    low, high = prompt_bootstrap(correct, prompts, n_boot=n_boot, seed=seed)
    return {"rm_heldout_pairs": len(pairs), "rm_heldout_prompts": len(set(prompts)),
            "rm_heldout_accuracy": round(float(correct.mean()), 4),
            "rm_heldout_accuracy_ci95": [round(low, 4), round(high, 4)],
            "rm_heldout_margin": round(float(np.mean(chosen - rejected)), 4)}


def prompt_bootstrap(correct: np.ndarray, prompts: Sequence[str], *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the pair accuracy ``correct.mean()``, resampling whole prompts with their pairs.

    The pairs of one prompt share replies (one good sample against each of the others), so they are not
    independent: resampling pairs would narrow the interval as if 25 pairs from 2 prompts were 25 prompts.
    """
    index = np.unique(np.asarray(prompts), return_inverse=True)[1].ravel()
    right = np.bincount(index, weights=correct)
    count = np.bincount(index).astype(np.float64)
    return ratio_interval(right, count, n_bootstrap=n_boot, seed=seed)


def register() -> None:
    """Make ``reward_model`` a reward of :mod:`recbench.llm.rewards` (idempotent)."""
    from recbench.llm.rewards import register_reward

    register_reward("reward_model", reward_model_reward)
