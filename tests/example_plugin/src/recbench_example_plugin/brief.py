"""``grpo_brief``: GRPO rewarded by the task's own metric plus a custom reward, ``brevity``.

The whole recipe is a reward (a factory registered through the ``recbench_register_rewards``
hook in ``__init__``, so that it can be rebuilt by name inside a training subprocess) and a config whose default
``rewards`` name it. Everything else (prompts, answer reading, training, the learning-rate search,
checkpoints) comes from recbench's post-training core.
"""

from __future__ import annotations

from dataclasses import dataclass

from recbench.config import option
from recbench.plugins.llm.grpo import GRPO, GRPOConfig


def brevity(max_chars: str = "24"):
    """1 for a reply of at most ``max_chars`` characters, shrinking as it grows longer."""
    limit = float(max_chars)

    def reward(replies, rows):
        return [1.0 if len(text) <= limit else limit / len(text) for text in replies]

    return reward


@dataclass(frozen=True)
class BriefGRPOConfig(GRPOConfig):
    rewards: tuple[str, ...] = option(("metric", "0.2*brevity:max_chars=24"), "the task's metric plus a brevity bonus")


class BriefGRPO(GRPO):
    name = "grpo_brief"
    description = "GRPO on the task's metric plus a brevity reward (example plugin)"
    Config = BriefGRPOConfig
