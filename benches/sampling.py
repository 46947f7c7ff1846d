"""How much does sharing a prompt's prefill save when sampling ``n`` replies per prompt?

Preference pairs (the RLHF top-k paper's DPO and reward model) sample ``n`` replies for every
training prompt. ``TransformersBackend.generate`` runs each distinct prompt of a batch once and
copies its KV cache to the rows that sample it; before, ``generate`` ran the prompt once per row.
This bench samples the same ``topk`` training prompts both ways, through the un-cached backend
of ``zero_shot`` (the embedded SmolLM2-135M unless ``--model``), alternating the two ways prompt
by prompt so that the load of a shared machine changes both alike, and prints seconds per prompt
and the share of replies that came out identical (the draws are seeded per row, so they differ
only where float32 rounding of the two prefills flips a token). Run::

    .venv/bin/python benches/sampling.py [--prompts 4] [--n 8] [--max-new-tokens 96] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def topk_prompts(method, count: int):
    from recbench.llm.recipe import draw
    from recbench.runner import load_task_data

    data = load_task_data("topk").fit
    method.fit(data)
    examples, _ = draw(data.train_examples, data.train_targets, count, 0)
    return method.task.prompts(examples, method.style())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--n", type=int, default=8, help="replies per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default=None, help="a model alias or folder (default: zero_shot's)")
    args = parser.parse_args(argv)

    import torch

    from recbench.llm.preferences import sample_replies
    from recbench.manager import load_registry

    torch.set_num_threads(args.threads)
    Method = load_registry().methods.get("zero_shot")
    settings = {"cache": False, **({"model": args.model} if args.model else {})}
    method = Method(Method.Config(**settings))
    prompts = topk_prompts(method, args.prompts)
    backend = method.backend
    tokens = [backend.count_tokens(backend.context(p.messages, p.forced_prefix)) for p in prompts]
    print(f"{backend.name}: {len(prompts)} topk prompts of {min(tokens)}-{max(tokens)} tokens, n={args.n}, "
          f"{args.max_new_tokens} new tokens, {args.threads} thread(s)")
    seconds = {"shared": 0.0, "per row": 0.0}
    same = total = 0
    for prompt in prompts:
        replies = {}
        for way in seconds:
            if way == "per row":
                backend._shared_prefill = lambda *a: {}  # generate runs the prompt once per row
            else:
                backend.__dict__.pop("_shared_prefill", None)
            start = time.perf_counter()
            [replies[way]] = sample_replies(backend, [prompt], args.n, max_new_tokens=args.max_new_tokens, seed=0)
            seconds[way] += time.perf_counter() - start
        same += sum(a == b for a, b in zip(replies["shared"], replies["per row"]))
        total += args.n
    per_prompt = {way: s / len(prompts) for way, s in seconds.items()}
    for way, s in per_prompt.items():
        print(f"  {way:<8} {s:6.1f} s per prompt ({args.n} replies)")
    print(f"  speed-up {per_prompt['per row'] / per_prompt['shared']:.2f}x; identical replies {same}/{total}")
    print(json.dumps({"prompts": len(prompts), "n": args.n, "max_new_tokens": args.max_new_tokens,
                      "threads": args.threads, "prompt_tokens": [min(tokens), max(tokens)],
                      **{f"s_per_prompt_{w.replace(' ', '_')}": round(s, 2) for w, s in per_prompt.items()},
                      "identical": same, "replies": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
