"""Can ``rlhf_ppo``'s reward model learn a preference at all, on the very replies whose NDCG pairs it cannot learn?

A control for the reward model of the RLHF top-k recipe (``plugins/llm/rlhf.py``). On ``topk``
at the ``smoke`` preset its held-out pairwise accuracy stays at chance. That is either a fault
in the wiring (pair rows, chosen/rejected order, head, scoring) or too little signal (pairs from
few prompts, and "names one of this user's next items" is hard to see in a list of titles).

This bench takes the recipe's own steps (its SFT start, its sampled replies: the same cached
calls) and ranks the same replies two ways:

- ``metric``: the task's metric, NDCG@5 against the held-out next items (what the recipe does);
- ``distinct``: the number of distinct catalog titles a reply names (the ``distinct`` reward of
  :mod:`recbench.llm.rewards`: its ``ranked`` length as the ``topk`` reader grounds it, over k). This preference is in the text itself: a reward model whose wiring
  works should learn it from as many pairs as the metric gives.

It trains the recipe's reward model (``RLHFPPO.fit_reward_model``: same job, same steps) on each
preference's training pairs (``distinct`` subsampled to the ``metric`` count, so both train for
the same steps) and reports each one's accuracy on its own held-out pairs (the validation
prompts), with the recipe's prompt bootstrap. Run::

    .venv/bin/python benches/rlhf_reward_control.py [--preferences distinct metric] [--set key=value ...]

``--set`` takes ``rlhf_ppo`` options (``train_examples=48``); ``task.max_test_examples`` is irrelevant here.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out" / "rlhf"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preferences", nargs="+", default=["distinct", "metric"], choices=["distinct", "metric"])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from recbench.config import build_config, parse_assignments
    from recbench.llm.recipe import draw
    from recbench.llm.rewards import RewardSpec, build_reward
    from recbench.manager import load_registry
    from recbench.runner import load_task_data

    Method = load_registry().methods.get("rlhf_ppo")
    method = Method(build_config(Method.Config, parse_assignments(args.settings), owner="rlhf_ppo"), seed=0)
    c = method.config
    data = load_task_data("topk").fit
    start = time.perf_counter()
    base = method.set_up(data)
    sft = method.sft_start(data)
    train = draw(data.train_examples, data.train_targets, c.train_examples, method.seed)
    valid = draw(data.valid, data.valid_targets, c.valid_examples, 0)
    rewards = {"metric": None, "distinct": build_reward(RewardSpec("distinct"))}
    pairs = {name: (method.preference_pairs(sft, *train, reward=rewards[name]),
                    method.preference_pairs(sft, *valid, reward=rewards[name])) for name in ("metric", "distinct")}
    print(f"rlhf_ppo {json.dumps(args.settings)}: SFT start and {c.n_samples} replies for each of "
          f"{len(train[0])} training and {len(valid[0])} validation prompts in {time.perf_counter() - start:.0f} s")
    n_train = len(pairs["metric"][0][0]) or None  # no metric pair: each preference trains on all its pairs
    summary = []
    for name in args.preferences:
        (train_pairs, report), (held_out, held_report) = pairs[name]
        if not train_pairs:
            print(f"  {name:<9} no pair: every prompt's replies tied ({report['pref_samples']} replies)")
            continue
        if n_train and len(train_pairs) > n_train:
            # the metric's count, so both train for the same steps (as --set max_pairs=N draws them)
            train_pairs = random.Random(method.seed).sample(train_pairs, n_train)
        prompts = len({json.dumps(p["prompt"]) for p in train_pairs})
        start = time.perf_counter()
        checkpoint, accuracy = method.fit_reward_model(base, train_pairs, held_out)
        row = {"preference": name, "train_pairs": len(train_pairs), "train_prompts": prompts,
               "pairs_built": report["pref_pairs_built"], "mean_score": report["pref_mean_reward"],
               "rm_train_loss": checkpoint.provenance.get("train_loss"), **accuracy,
               "fit_s": round(time.perf_counter() - start)}
        summary.append(row)
        low, high = accuracy.get("rm_heldout_accuracy_ci95", [float("nan")] * 2)
        print(f"  {name:<9} train {len(train_pairs)} pairs from {prompts} prompts (of {report['pref_pairs_built']} built; "
              f"mean score {report['pref_mean_reward']:.4f}); reward model train loss {row['rm_train_loss']}; held out "
              f"{accuracy.get('rm_heldout_pairs', 0)} pairs from {accuracy.get('rm_heldout_prompts', 0)} prompts: accuracy "
              f"{accuracy.get('rm_heldout_accuracy', float('nan')):.3f} [{low:.3f}, {high:.3f}] ({row['fit_s']} s)")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"reward-control-{'-'.join(args.preferences)}.json"
    out.write_text(json.dumps({"settings": args.settings, "rows": summary}, indent=1) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
