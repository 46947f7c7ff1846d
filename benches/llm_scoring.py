"""How fast is candidate scoring with prefix reuse, against generation and against a plain forward pass?

On the same rerank-style examples (hand-built from a fixed movie list: a system line, a rated
history, ``n`` candidates as ``<option> ... </option>``, the forced prefix
``Prediction: <option>``, the artwork/rerank prompt of :mod:`recbench.llm.prompts`), it times:

1. ``score``: ``TransformersBackend.score`` over all examples (tokenization, one prefix forward
   per example, one batched forward over its candidates reusing the prefix cache, log-softmax);
2. ``score, no reuse``: per example one batched forward over ``n`` full prompt+candidate
   sequences and the same log-softmax (what scoring costs without the prefix cache), on the
   first group of examples only (it feeds ``n`` times the prompt tokens);
3. ``generate, batch 1`` and ``batch B``: ``TransformersBackend.generate``, greedy, until
   ``</option>`` or the longest candidate's token count + 4, then :func:`choose_by_ngrams` reads
   the choice (what a generation-based zero-shot does); batch 1 is plain per-example generation;
4. ``forward ceiling``: per example one plain forward over a single packed sequence holding the
   same tokens ``score`` feeds (the prefix once, then every candidate), logits kept for the
   candidate positions only: no cache copies, no padding, no tokenization, no log-softmax.

Examples are measured in groups of ``--batch``, every way in turn (each ``--repeats`` times, the
fastest kept), so that the load of a shared machine changes all rows alike. Tokens are those fed to the model (prompt tokens once per example for ``score``; every
prompt+candidate for ``no reuse``; prompt plus generated tokens for ``generate``). Run::

    .venv/bin/python benches/llm_scoring.py [--examples 32] [--candidates 10] [--history 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

MOVIES = [
    ("Toy Story (1995)", "Animation|Children's|Comedy"), ("GoldenEye (1995)", "Action|Adventure|Thriller"),
    ("Four Rooms (1995)", "Thriller"), ("Get Shorty (1995)", "Action|Comedy|Drama"),
    ("Copycat (1995)", "Crime|Drama|Thriller"), ("Twelve Monkeys (1995)", "Drama|Sci-Fi"),
    ("Babe (1995)", "Children's|Comedy|Drama"), ("Dead Man Walking (1995)", "Drama"),
    ("Richard III (1995)", "Drama|War"), ("Seven (Se7en) (1995)", "Crime|Thriller"),
    ("The Usual Suspects (1995)", "Crime|Thriller"), ("Mighty Aphrodite (1995)", "Comedy"),
    ("Postino, Il (1994)", "Drama|Romance"), ("Mr. Holland's Opus (1995)", "Drama"),
    ("French Twist (1995)", "Comedy|Romance"), ("From Dusk Till Dawn (1996)", "Action|Comedy|Crime|Horror"),
    ("Braveheart (1995)", "Action|Drama|War"), ("Taxi Driver (1976)", "Drama|Thriller"),
    ("Apollo 13 (1995)", "Action|Drama|Thriller"), ("Batman Forever (1995)", "Action|Adventure|Comedy|Crime"),
    ("Crimson Tide (1995)", "Drama|Thriller|War"), ("Desperado (1995)", "Action|Romance|Thriller"),
    ("Free Willy 2 (1995)", "Adventure|Children's|Drama"), ("Mad Love (1995)", "Drama|Romance"),
    ("Star Wars (1977)", "Action|Adventure|Romance|Sci-Fi|War"), ("Pulp Fiction (1994)", "Crime|Drama"),
    ("The Shawshank Redemption (1994)", "Drama"), ("Forrest Gump (1994)", "Comedy|Romance|War"),
    ("The Lion King (1994)", "Animation|Children's|Musical"), ("Jurassic Park (1993)", "Action|Adventure|Sci-Fi"),
    ("Blade Runner (1982)", "Film-Noir|Sci-Fi"), ("Fargo (1996)", "Crime|Drama|Thriller"),
    ("The Godfather (1972)", "Action|Crime|Drama"), ("Casablanca (1942)", "Drama|Romance|War"),
    ("Titanic (1997)", "Action|Drama|Romance"), ("Contact (1997)", "Drama|Sci-Fi"),
    ("Scream (1996)", "Horror|Thriller"), ("Liar Liar (1997)", "Comedy"),
    ("Air Force One (1997)", "Action|Thriller"), ("The English Patient (1996)", "Drama|Romance|War"),
]  # fmt: skip
EXPERT = "You are an expert in movies and shows."
PREFIX, STOP = "Prediction: <option>", ("</option>", "\n\n")


def build_examples(n: int, n_candidates: int, n_history: int, seed: int = 0) -> list[tuple[list, list[str]]]:
    """``(messages, options)`` per example: a rated history and candidates drawn from MOVIES."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        picked = rng.sample(MOVIES, n_history + n_candidates)
        history = "\n".join(f"- {t}, {g.replace('|', ', ')}: rated {rng.randint(1, 5)} out of 5" for t, g in picked[:n_history])
        options = [f"{t}, {g.replace('|', ', ')}" for t, g in picked[n_history:]]
        listed = "\n".join(f"<option> {o} </option>" for o in options)
        user = (
            "I want you to predict which of the candidate movies the user will watch next, based on their past "
            f"interactions.\n\nThe user's ratings:\n{history}\n\nHere are the movie options:\n{listed}\n\n"
            "Output the best movie in text."
        )
        examples.append(([{"role": "system", "content": EXPERT}, {"role": "user", "content": user}], options))
    return examples


def run(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from recbench.llm import models
    from recbench.llm.backend import DecodingParams
    from recbench.llm.parsing import choose_by_ngrams

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backend = models.load_backend(args.model, dtype="float32", device="cpu", batch_size=1)
    load_s = time.perf_counter() - start
    examples = build_examples(args.examples, args.candidates, args.history)
    prompts = [m for m, _ in examples]
    conts = [[f" {o} </option>" for o in opts] for _, opts in examples]
    split = [backend.split_tokens(backend.context(p, PREFIX), c, "bench") for p, c in zip(prompts, conts)]
    max_new = max(len(tail) for _, tails, _ in split for tail in tails) + 4
    params = DecodingParams(max_new_tokens=max_new, forced_prefix=PREFIX, stop=STOP)
    prompt_tokens = [backend.count_tokens(backend.context(p, PREFIX)) for p in prompts]
    backend.score(prompts[:1], conts[:1], forced_prefix=PREFIX)  # warm-up: first calls allocate
    seconds: dict[str, float] = {}
    tokens: dict[str, int] = {}
    n_examples: dict[str, int] = {}
    scores, generations = [], {1: [], args.batch: []}

    def clock(name: str, fn, n_tokens: int, n: int, repeats: int = args.repeats):
        best = float("inf")
        for _ in range(repeats):  # the fastest repeat: the least disturbed by other processes
            begin = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - begin)
        seconds[name] = seconds.get(name, 0.0) + best
        tokens[name], n_examples[name] = tokens.get(name, 0) + n_tokens, n_examples.get(name, 0) + n
        return out

    def ceiling(group):
        for pre, tails, _ in (split[i] for i in group):
            packed = torch.tensor([pre + [tok for tail in tails for tok in tail]])
            with torch.inference_mode():
                backend.model(input_ids=packed, logits_to_keep=sum(map(len, tails)))

    def no_reuse(group):
        for pre, tails, _ in (split[i] for i in group):
            width = max(map(len, tails))
            ids = torch.full((len(tails), len(pre) + width), backend.pad_id)
            mask = torch.zeros_like(ids)
            for r, tail in enumerate(tails):
                ids[r, : len(pre) + len(tail)] = torch.tensor(pre + tail)
                mask[r, : len(pre) + len(tail)] = 1
            with torch.inference_mode():
                logits = backend.model(input_ids=ids, attention_mask=mask).logits
                logits[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1) - logits[:, :-1].logsumexp(-1)

    def generate(group, batch):
        backend.batch_size = batch
        return [g[0] for g in backend.generate([prompts[i] for i in group], params)]

    # measured group by group, each way in turn, so a shared machine's load changes hit all alike
    for lo in range(0, len(examples), args.batch):
        group = list(range(lo, min(lo + args.batch, len(examples))))
        fed = sum(len(split[i][0]) + sum(map(len, split[i][1])) for i in group)
        scores += clock("score (prefix reuse)", lambda: backend.score(
            [prompts[i] for i in group], [conts[i] for i in group], forced_prefix=PREFIX), fed, len(group))  # fmt: skip
        clock("forward ceiling (packed)", lambda: ceiling(group), fed, len(group))
        for batch in (1, args.batch):
            out = clock(f"generate, batch {batch}", lambda: generate(group, batch), 0, len(group))
            tokens[f"generate, batch {batch}"] += sum(prompt_tokens[i] for i in group) + sum(g.n_tokens for g in out)
            generations[batch] += out
        if lo == 0 and args.no_reuse:  # ten prompts' worth of tokens per example: one group, once
            plain = sum(len(split[i][1]) * len(split[i][0]) + sum(map(len, split[i][1])) for i in group)
            clock("score, no reuse (plain)", lambda: no_reuse(group), plain, len(group), repeats=1)

    choices = [choose_by_ngrams(g.text, opts) for g, (_, opts) in zip(generations[1], examples)]
    parsable = [i for i, c in enumerate(choices) if c.status == "ok"]
    agree = sum(choices[i].index == int(np.argmax(scores[i])) for i in parsable)
    same_batches = sum(a.text == b.text for a, b in zip(generations[1], generations[args.batch]))
    return {
        "model": args.model, "fingerprint": backend.fingerprint, "load_s": round(load_s, 2),
        "examples": args.examples, "candidates": args.candidates, "history": args.history, "batch": args.batch,
        "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0], "repeats": args.repeats,
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompts), "max_new_tokens": max_new,
        "rows": {name: {"seconds": t, "examples": n_examples[name], "examples_per_s": n_examples[name] / t,
                        "tokens": tokens[name], "tokens_per_s": tokens[name] / t} for name, t in seconds.items()},
        "parsable": len(parsable), "agree": agree, "generation_batch_invariant": same_batches,
        "sample_generation": generations[1][0].text,
    }  # fmt: skip


def print_report(report: dict) -> None:
    from tabulate import tabulate

    rows = report["rows"]
    table = [[name, r["examples"], f"{r['seconds']:.1f}", f"{r['examples_per_s']:.3f}", r["tokens"],
              f"{r['tokens_per_s']:.0f}"] for name, r in rows.items()]  # fmt: skip
    print(f"model {report['model']} ({report['fingerprint']}), loaded in {report['load_s']} s; "
          f"{report['examples']} examples x {report['candidates']} candidates, history {report['history']} "
          f"(mean prompt {report['mean_prompt_tokens']:.0f} tokens); best of {report['repeats']}; "
          f"torch threads {report['torch_threads']}, "
          f"load average {report['load_average']:.1f}")  # fmt: skip
    print(tabulate(table, headers=["what", "examples", "seconds", "examples/s", "tokens fed", "tokens/s"]))
    score, plain = rows["score (prefix reuse)"], rows["generate, batch 1"]
    vs_gen = score["examples_per_s"] / plain["examples_per_s"]
    vs_ceiling = score["tokens_per_s"] / rows["forward ceiling (packed)"]["tokens_per_s"]
    print(f"\nscoring vs per-example generation: {vs_gen:.1f}x examples/s (target >= 5x: {'met' if vs_gen >= 5 else 'MISSED'})")
    print(f"scoring vs forward ceiling: {vs_ceiling:.0%} of its tokens/s (target >= 70%: {'met' if vs_ceiling >= 0.7 else 'MISSED'})")
    print(f"generation answers parsable (one best n-gram match): {report['parsable']}/{report['examples']}; "
          f"scoring picks the same option on {report['agree']}/{report['parsable']} of them")
    print(f"batch-1 and batch-{report['batch']} greedy generations identical on "
          f"{report['generation_batch_invariant']}/{report['examples']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--history", type=int, default=10, help="rated movies in each prompt (prompt length)")
    parser.add_argument("--batch", type=int, default=8, help="the batched generation's batch size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1, help="time each group this many times, keep the fastest")
    parser.add_argument("--no-reuse", action=argparse.BooleanOptionalAction, default=True,
                        help="also time scoring without the prefix cache, on the first group only (slow)")
    parser.add_argument("--json", metavar="PATH", help="also write the measurements as JSON to PATH")
    args = parser.parse_args(argv)
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
