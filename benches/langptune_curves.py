"""The RLSO loss and mean reward per batch (and the InfoNCE loss per step) of a LangPTune result, as PNGs::

    .venv/bin/python benches/langptune_curves.py RESULT.json [--out DIR]

Reads ``method.fitted.rlso_curve`` and ``method.fitted.infonce_loss`` from a results file of
``langptune``, ``langptune_rlso`` or ``langptune_cl`` and writes ``<run>.rlso.png`` (loss and
mean raw reward per RLSO batch) and ``<run>.infonce.png`` beside it or in ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
    curve = fitted.get("rlso_curve") or []
    if curve:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        steps = range(1, len(curve) + 1)
        a.plot(steps, [r["loss"] for r in curve], marker="o")
        a.set(title="RLSO loss (mean over epochs)", xlabel="RLSO batch", ylabel="loss")
        b.plot(steps, [r["reward"] for r in curve], marker="o", color="tab:green")
        b.set(title="mean reward (NDCG of the upcoming item)", xlabel="RLSO batch", ylabel="reward")
        fig.tight_layout()
        fig.savefig(out / f"{name}.rlso.png", dpi=110)
        written.append(str(out / f"{name}.rlso.png"))
    losses = fitted.get("infonce_loss") or []
    if isinstance(losses, list) and losses:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(range(1, len(losses) + 1), losses, marker=".")
        ax.set(title="InfoNCE loss", xlabel="step", ylabel="loss")
        fig.tight_layout()
        fig.savefig(out / f"{name}.infonce.png", dpi=110)
        written.append(str(out / f"{name}.infonce.png"))
    print("\n".join(written) or "no curves in this result")


if __name__ == "__main__":
    main()
