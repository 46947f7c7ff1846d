"""Did RL raise its reward model's score on prompts it never trained on?

``rlhf_ppo`` and ``rlhf_rloo`` log the mean reward-model score of their rollouts per step, but each
step samples new training prompts, so a rising curve can be prompt-to-prompt spread as much as
learning. This bench scores every RLHF stage's test replies (the ``llm_output`` its results file
keeps per test user) with one reward model, and compares each stage with the reference stage on
the same users (paired bootstrap, :func:`recbench.stats.paired_difference`). A policy that learned
to please the reward model scores higher than its SFT start on these unseen prompts.

Each stage's newest run is scored unless ``--runs`` names others. The reward model is the one
the chosen ``rlhf_ppo`` run trained (its ``rm_checkpoint``) unless ``--checkpoint`` names another; it must exist in this machine's checkpoint cache (train it with
``recbench run --task topk --method rlhf_ppo ...`` or ``benches/rlhf_reward_control.py``). Run::

    .venv/bin/python benches/rlhf_test_rewards.py [--results results] [--reference rlhf_sft] [--checkpoint FOLDER] [--users N] [--methods rlhf_sft rlhf_ppo] [--runs RUN_ID ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METHODS = ("rlhf_sft", "rlhf_dpo", "rlhf_ppo", "rlhf_rloo")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--reference", default="rlhf_sft")
    parser.add_argument("--checkpoint", default=None, help="a reward_model checkpoint folder")
    parser.add_argument("--users", type=int, default=None, help="the first N shared test users only (a quick look)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="stages to score")
    parser.add_argument("--runs", nargs="+", default=[], metavar="RUN_ID", help="score these runs, not their stages' newest")
    args = parser.parse_args(argv)

    import numpy as np

    from recbench.llm.reward_model import score_texts
    from recbench.llm.training import checkpoints_dir
    from recbench.manager import load_registry
    from recbench.results import ResultStore, examples_file_of, read_examples
    from recbench.runner import load_task_data
    from recbench.stats import paired_difference

    store = ResultStore(args.results)
    pinned = {doc["method"]["name"]: doc for _, doc in store.iter_results("topk") if doc["run_id"] in args.runs}
    newest = {**store.newest_by_method("topk"), **pinned}
    if "rlhf_ppo" not in newest and args.checkpoint is None:
        raise SystemExit("no rlhf_ppo run under --results: name a reward model with --checkpoint")
    checkpoint = (Path(args.checkpoint) if args.checkpoint
                  else checkpoints_dir() / newest["rlhf_ppo"]["method"]["fitted"]["rm_checkpoint"])
    runs = {name: newest[name] for name in METHODS if name in newest and name in args.methods + [args.reference]}
    replies = {name: {row["key"]: row["llm_output"]
                      for row in read_examples(examples_file_of(store.path("topk", name, doc["run_id"]), doc))}
               for name, doc in runs.items()}
    keys = sorted(set.intersection(*(set(r) for r in replies.values())), key=int)[: args.users]
    method = load_registry().methods.get("rlhf_ppo")()
    task_data = load_task_data("topk")
    method.task = task_data.fit.llm  # prompts only: the test targets stay in task_data
    rows = np.flatnonzero(np.isin(np.asarray(task_data.test_inputs.keys, dtype=str), keys))
    examples = task_data.test_inputs.take(rows)
    prompts = {str(k): p for k, p in zip(examples.keys, method.task.prompts(examples, method.style()))}
    print(f"reward model {checkpoint.name}; {len(keys)} test users every stage answered")
    scores = {}
    for name in METHODS:
        if name in replies:
            conversations = [list(prompts[k].messages) + [{"role": "assistant", "content": replies[name][k]}] for k in keys]
            scores[name] = score_texts(str(checkpoint), conversations)
    summary = {"checkpoint": checkpoint.name, "users": len(keys), "rows": []}
    for name, values in scores.items():
        row = {"method": name, "run_id": runs[name]["run_id"], "mean_score": round(float(values.mean()), 4)}
        line = f"  {name:<10} {runs[name]['run_id']}  mean reward-model score {values.mean():+.4f}"
        if name != args.reference and args.reference in scores:
            d = paired_difference(values, scores[args.reference])
            row.update(delta=round(d.mean, 4), ci95=[round(d.ci_low, 4), round(d.ci_high, 4)], p=round(d.p_value, 4))
            line += f"   vs {args.reference} {d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}], p {d.p_value:.3f}"
        summary["rows"].append(row)
        print(line)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
