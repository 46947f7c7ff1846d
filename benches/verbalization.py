"""The verbalization recipe's stage 1 measured: time per GRPO step, and the reward curves of finished runs.

    .venv/bin/python benches/verbalization.py time [--method verbal_rewrite] [--steps 3] [--set key=value ...]
    .venv/bin/python benches/verbalization.py curve RESULTS_DIR OUT_DIR

``time`` fits the method's stage 1 on the ``rerank`` task in this process (smoke preset, ``steps``
GRPO steps of ``prompts_per_step`` examples) with TRL's trainer methods wrapped by timers, and
prints per step: generation (``GRPOTrainer._generate_single_turn``), the oracle reward
(:data:`recbench.llm.oracle.ORACLE_TIMES`, with how many verbalizations it scored and reused),
the rest of the rewards and scoring (reference and old log-probabilities), and optimisation (the
forward and backward pass of the loss). ``curve`` plots, for every ``verbal_*`` result under
``RESULTS_DIR`` (or in one checkpoint's ``train_log.json``), the stage-1 mean reward per step split into its accuracy part (``oracle``,
r_acc) and its length part (``compression``, r_len), unweighted, into
``OUT_DIR/verbalization_reward_curve.png``, and prints the numbers; a run of several epochs also gets each
epoch's mean (dashed), the comparison on the same training prompts.

    .venv/bin/python benches/verbalization.py oracle [--oracle smollm2-135m] [--examples 48]

``oracle`` asks whether an oracle can reward a verbalization at all: on a seeded draw of ``examples``
rerank training examples (the recipe's own draw when it equals the smoke's 16) it scores r_acc (the oracle's probability of the target, and
whether the target is its top option) once with the template verbalization of the history in the
reasoner's prompt and once with the slot left empty. An oracle whose answer does not move when
the history is removed cannot prefer one verbalization over another, so no verbalizer can raise
its r_acc.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def timed_steps() -> list[dict[str, float]]:
    """Wraps GRPOTrainer's step, input preparation and generation with timers; returns the per-step list it fills."""
    from trl import GRPOTrainer

    from recbench.llm.oracle import ORACLE_TIMES

    steps: list[dict[str, float]] = []
    current: dict[str, float] = {}

    def wrap(name: str, key: str):
        original = getattr(GRPOTrainer, name)

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                current[key] = current.get(key, 0.0) + time.perf_counter() - start

        setattr(GRPOTrainer, name, timed)

    step_original = GRPOTrainer.training_step

    def step(self, *args, **kwargs):
        current.clear()
        oracle_before = dict(ORACLE_TIMES)
        start = time.perf_counter()
        out = step_original(self, *args, **kwargs)
        total = time.perf_counter() - start
        oracle = ORACLE_TIMES["seconds"] - oracle_before["seconds"]
        prepare, generation = current.get("prepare", 0.0), current.get("generation", 0.0)
        steps.append({"total_s": total, "generation_s": generation, "oracle_reward_s": oracle,
                      "other_scoring_s": prepare - generation - oracle, "optimisation_s": total - prepare,
                      "oracle_scored": ORACLE_TIMES["scored"] - oracle_before["scored"],
                      "oracle_reused": ORACLE_TIMES["reused"] - oracle_before["reused"]})
        return out

    wrap("_prepare_inputs", "prepare")
    wrap("_generate_single_turn", "generation")
    GRPOTrainer.training_step = step
    return steps


def time_stage1(args: argparse.Namespace) -> int:
    from recbench.config import build_config
    from recbench.manager import load_registry
    from recbench.runner import load_task_data

    data = load_task_data("rerank")
    method_cls = load_registry().methods.get(args.method)
    settings = dict(s.split("=", 1) for s in args.set)
    config = build_config(method_cls.Config, {}, settings, owner=f"method {args.method!r} config")
    method = method_cls(config)
    c = method.config
    steps_wanted = args.steps * c.prompts_per_step
    method = method_cls(build_config(method_cls.Config, {}, {**settings, "train_examples": str(steps_wanted),
                                                               "valid_examples": "2"}, owner="bench"))
    steps = timed_steps()
    start = time.perf_counter()
    method.fit(data.fit)
    wall = time.perf_counter() - start
    c = method.config
    print(f"{args.method}, stage 1: {len(steps)} GRPO steps of {c.prompts_per_step} examples x {c.num_generations} "
          f"verbalizations (<= {c.verbal_tokens} tokens), oracle {c.oracle} ({c.oracle_scoring}); fit {wall:.1f} s")
    keys = ("total_s", "generation_s", "oracle_reward_s", "other_scoring_s", "optimisation_s", "oracle_scored", "oracle_reused")
    print("step " + " ".join(f"{k:>16}" for k in keys))
    for i, s in enumerate(steps, 1):
        print(f"{i:>4} " + " ".join(f"{s[k]:>16.2f}" if k.endswith("_s") else f"{s[k]:>16d}" for k in keys))
    if steps:
        mean = {k: sum(s[k] for s in steps) / len(steps) for k in keys}
        print("mean " + " ".join(f"{mean[k]:>16.2f}" for k in keys))
        print(json.dumps({"method": args.method, "steps": steps, "mean": mean}))
    return 0


def stage1_curves(results: Path) -> dict[str, list[dict[str, float]]]:
    """Stage-1 curves of the ``verbal_*`` results under ``results`` (each method's newest run), or of one
    checkpoint's ``train_log.json``."""
    from recbench.results import ResultStore

    if results.is_file():  # a stage-1 checkpoint's training log (e.g. the one ``time`` trained)
        return {results.parent.name: json.loads(results.read_text())["curve"]}
    out = {}
    for name, document in ResultStore(results).newest_by_method().items():
        curve = ((document["method"].get("fitted") or {}).get("trained") or {}).get("verbalizer", {}).get("curve")
        if name.startswith("verbal_") and curve:
            out[name] = curve
    return out


PARTS = ("reward", "rewards/oracle/mean", "rewards/compression/mean")  # the weighted total, r_acc and r_len


def _parts(values: dict[str, float]) -> str:
    reward, acc, length = (values.get(k, float("nan")) for k in PARTS)
    return f"reward {reward:.4f}  r_acc {acc:.4f}  r_len {length:.4f}"


def epoch_means(curve: list[dict[str, float]]) -> list[tuple[tuple[int, int], dict[str, float]]]:
    """Per epoch of a multi-epoch run (curves that log ``epoch``): its first and last step and the mean of each
    reward over its steps. Every epoch visits the same training prompts, so a rise between epochs is learning,
    not easier prompts. Empty for a one-epoch run."""
    groups: dict[int, list[dict[str, float]]] = {}
    for p in curve:
        if "epoch" in p:
            groups.setdefault(math.ceil(p["epoch"] - 1e-6), []).append(p)
    if len(groups) < 2:
        return []
    out = []
    for _, points in sorted(groups.items()):
        means = {k: statistics.fmean(p[k] for p in points if k in p) for k in PARTS if any(k in p for p in points)}
        out.append(((points[0]["step"], points[-1]["step"]), means))
    return out


def plot(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves = stage1_curves(Path(args.results))
    if not curves:
        print(f"no verbal_* result with a stage-1 curve under {args.results}")
        return 1
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for number, (name, curve) in enumerate(sorted(curves.items())):
        steps, color = [p["step"] for p in curve], f"C{number}"  # one colour per method in every panel
        for ax, key in zip(axes, PARTS):
            values = [p.get(key) for p in curve]
            if any(v is not None for v in values):
                ax.plot(steps, values, marker=".", label=name, color=color)
        print(name)
        by_epoch = epoch_means(curve)
        for ax, key in zip(axes, PARTS):
            for (first, last), means in by_epoch:
                if means.get(key) is not None:  # the epoch's mean over the same training prompts, across its steps
                    ax.hlines(means[key], first, last, linestyles="dashed", linewidth=1.2, color=color)
        for p in curve:
            print(f"  step {p['step']:>3}: {_parts(p)}  zero-std groups {p.get('frac_reward_zero_std', float('nan')):.2f}"
                  f"  kl {p.get('kl', float('nan')):.4f}")
        for number, ((first, last), means) in enumerate(by_epoch, 1):
            print(f"  epoch {number} (steps {first}-{last}, the same training prompts each epoch): {_parts(means)}")
    titles = ("weighted total", "r_acc (oracle)", "r_len (compression plateau)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
    axes[0].set_ylabel("mean reward over the step's samples")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "verbalization_reward_curve.png", dpi=120)
    print(f"wrote {out / 'verbalization_reward_curve.png'}")
    return 0


def oracle_reads_history(args: argparse.Namespace) -> int:
    """r_acc with the template verbalization against r_acc with an empty history, on the same examples."""
    import numpy as np

    from recbench.llm.oracle import OracleReward
    from recbench.llm.recipe import draw
    from recbench.llm.verbalizers import History
    from recbench.manager import load_registry
    from recbench.runner import load_task_data
    from recbench.stats import paired_difference

    data = load_task_data("rerank").fit
    method = load_registry().methods.get("verbal_rewrite")()
    method.attach(data)
    c = method.config
    examples, targets = draw(data.train_examples, data.train_targets, args.examples, method.seed)
    rows = [json.loads(r["answer_row"]) for r in method.verbalizer_rows(examples, targets)]
    history = [method.verbalizer.source(History.of(examples, r), c.max_history_tokens, method.count_tokens).text
               for r in range(len(examples))]
    options = len(rows[0]["continuations"])
    print(f"oracle {args.oracle}, {len(rows)} rerank training examples, {options} options (uniform p = {1 / options:.3f})")
    summary: dict[str, Any] = {"oracle": args.oracle, "examples": len(rows), "options": options}
    for scoring, label in (("prob", "p(target)"), ("choice", "greedy answer right")):
        oracle = OracleReward(args.oracle, scoring=scoring, max_tokens=c.max_new_tokens)
        with_history, without = np.array(oracle(history, rows)), np.array(oracle([""] * len(rows), rows))
        d = paired_difference(with_history, without)
        print(f"  {label:<20} template history {with_history.mean():.4f}   empty history {without.mean():.4f}   "
              f"difference {d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}] (paired bootstrap), p {d.p_value:.3f}")
        summary.update({f"{scoring}_history": round(float(with_history.mean()), 6),
                        f"{scoring}_empty": round(float(without.mean()), 6)})
    print(json.dumps(summary))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    timing = sub.add_parser("time")
    timing.add_argument("--method", default="verbal_rewrite")
    timing.add_argument("--steps", type=int, default=3)
    timing.add_argument("--set", action="append", default=[], help="method option key=value")
    curve = sub.add_parser("curve")
    curve.add_argument("results")
    curve.add_argument("out")
    oracle = sub.add_parser("oracle")
    oracle.add_argument("--oracle", default="smollm2-135m", help="the oracle reasoner (alias, folder or URL)")
    oracle.add_argument("--examples", type=int, default=48)
    args = parser.parse_args(argv)
    return {"time": time_stage1, "curve": plot, "oracle": oracle_reads_history}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
