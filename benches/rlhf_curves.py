"""Plot the RLHF recipes' training curves from their results: mean reward per RL step, the reward model's loss.

    .venv/bin/python benches/rlhf_curves.py RESULTS_DIR OUT_DIR

Reads the newest ``rlhf_ppo`` / ``rlhf_rloo`` result under ``RESULTS_DIR`` (the ``fitted`` section the
recipes write: ``curve`` of the chosen checkpoint, ``rm_curve`` of the reward model) and writes
``rlhf_reward_curves.png`` and ``rlhf_reward_model_loss.png``; prints the numbers too, with the
reward model's held-out pairwise accuracy and its bootstrap interval.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def fitted_sections(results: Path) -> dict[str, dict[str, Any]]:
    """The ``fitted`` section of each RLHF method's newest run under ``results``."""
    from recbench.results import ResultStore

    out = {}
    for method, document in ResultStore(results).newest_by_method().items():
        fitted = _find(document, "curve")
        if method in ("rlhf_ppo", "rlhf_rloo", "rlhf_dpo", "rlhf_sft") and fitted is not None:
            out[method] = fitted
    return out


def _find(node: Any, key: str) -> dict[str, Any] | None:
    """The first dict under ``node`` holding ``key`` (results nest the method's description)."""
    if isinstance(node, dict):
        if key in node and isinstance(node[key], list):
            return node
        for value in node.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def main(argv: list[str]) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    sections = fitted_sections(results)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method in ("rlhf_ppo", "rlhf_rloo"):
        if method not in sections:
            continue
        curve = [p for p in sections[method]["curve"] if "reward" in p]
        steps, rewards = [p["step"] for p in curve], [p["reward"] for p in curve]
        ax.plot(steps, rewards, marker=".", label=method)
        half = max(1, len(rewards) // 2)
        print(f"{method}: {len(rewards)} steps; mean reward first half {sum(rewards[:half]) / half:.4f}, "
              f"second half {sum(rewards[half:]) / max(1, len(rewards) - half):.4f}; "
              f"kl last {curve[-1].get('kl') if curve else None}")
        for key in ("rm_heldout_accuracy", "rm_heldout_accuracy_ci95", "rm_heldout_pairs", "pref_pairs_built",
                    "pref_pairs_dropped_tied", "pref_ungrounded_samples", "pref_samples"):
            if key in sections[method]:
                print(f"  {key}: {sections[method][key]}")
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward (reward model score)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rlhf_reward_curves.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method in ("rlhf_ppo", "rlhf_rloo"):
        rm = (sections.get(method) or {}).get("rm_curve") or []
        if rm:
            ax.plot([p["step"] for p in rm], [p.get("loss") for p in rm], marker=".", label=f"reward model ({method})")
            break
    ax.set_xlabel("step")
    ax.set_ylabel("pairwise loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "rlhf_reward_model_loss.png", dpi=120)
    print(f"wrote {out / 'rlhf_reward_curves.png'} and {out / 'rlhf_reward_model_loss.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
