"""CURec's alignment reward curves (format, legal, correct, each on its own) and its correction reward, as PNGs::

    .venv/bin/python benches/curec_curves.py RESULT.json [--out DIR]

Reads ``method.fitted.alignment.curve`` (TRL's per-step ``rewards/<name>/mean``) and
``method.fitted.correction.curve`` (the recommender's mean score of the sampled reasons per
correction step) from a results file of ``curec`` or an ablation, and writes
``<method>-<run>.alignment.png`` and ``<method>-<run>.correction.png`` beside it or in ``--out``.
A ``curec_align`` result (the post-training core's ``curve``) is read too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REWARDS = ("format", "legal", "correct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(args.result)
    result = json.loads(path.read_text())
    fitted = result["method"]["fitted"]
    out = Path(args.out) if args.out else path.parent
    out.mkdir(parents=True, exist_ok=True)
    name = f"{result['method']['name']}-{path.stem}"
    written = []
    curve = (fitted.get("alignment") or {}).get("curve") or fitted.get("curve") or []
    if curve:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
        for ax, reward in zip(axes, REWARDS):
            points = [(p["step"], p[f"rewards/{reward}/mean"]) for p in curve if f"rewards/{reward}/mean" in p]
            ax.plot([s for s, _ in points], [v for _, v in points], marker="o")
            ax.set(title=f"alignment reward: {reward}", xlabel="GRPO step", ylim=(-0.05, 1.05))
        axes[0].set_ylabel("mean over the step's replies")
        fig.tight_layout()
        fig.savefig(out / f"{name}.alignment.png", dpi=110)
        written.append(str(out / f"{name}.alignment.png"))
    correction = (fitted.get("correction") or {}).get("curve") or []
    if correction:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(range(1, len(correction) + 1), [r["reward"] for r in correction], marker="o", color="tab:green")
        ax.set(title="correction reward (recommender score)", xlabel="GRPO step (time order)", ylabel="mean reward")
        fig.tight_layout()
        fig.savefig(out / f"{name}.correction.png", dpi=110)
        written.append(str(out / f"{name}.correction.png"))
    print("\n".join(written) or "no curves in this result")


if __name__ == "__main__":
    main()
