"""Does each post-training recipe learn? Accuracy before and after training on the learnability task.

    .venv/bin/python benches/learning.py [--recipes sft,sft_number,dpo,grpo:start=sft:start_examples=400,...]
                                         [--preset cpu] [--set KEY=VALUE ...] [--out benches/out/learning]

Every recipe runs through the real harness (``recbench run --task learnability --method R
--set preset=cpu``), as its own process whose tree's memory (PSS) is sampled every second (the peak), and so
does its untrained start (``zero_shot`` with the same model and answer format). Printed per
recipe: held-out accuracy (200 test users) before and after with 95% bootstrap intervals, the
gain, the most common test answer and its share (near 100%: the policy answers one position
whatever the prompt), training wall time, the process's peak memory, and the path of a PNG of the
training curve (loss per step; mean reward per step for the RL recipes; each with a running mean).
Results files land in ``results/`` like any run, so the leaderboard shows the same rows. Target on
2 CPU cores: every recipe gains at least +0.30 over its start, the intervals do not overlap, in
under 15 minutes of training.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("sft", "sft_number", "dpo", "grpo", "rloo", "sft_reason")


def answer_format(recipe: str) -> str:
    """The recipe's default answer format: its untrained start answers in the same one."""
    from recbench.manager import load_registry

    return load_registry().methods.get(recipe).Config().output


def tree_memory_gb(pid: int) -> float:
    """Proportional set size (PSS) of ``pid`` and all its descendants (the method's worker is a grandchild), in
    GB: pages shared between them (the fork server's and the worker's libraries) count once, not per process."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except OSError:  # gone, or not ours to read
            continue
        total_kb += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total_kb / 2**20


def run(method: str, settings: list[str], log: Path) -> tuple[dict, float, float]:
    """One ``recbench run``: its results document (its path under ``"_path"``), wall seconds and peak memory (GB) of
    its process tree."""
    command = [str(ROOT / ".venv/bin/recbench"), "run", "--task", "learnability", "--method", method,
               *[part for s in settings for part in ("--set", s)]]
    start, peak = time.perf_counter(), 0.0
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        while process.poll() is None:  # sampled: the worker is the fork server's child, outside getrusage
            peak = max(peak, tree_memory_gb(process.pid))
            time.sleep(1.0)
    wall = time.perf_counter() - start
    text = log.read_text()
    if process.returncode != 0:
        raise SystemExit(f"{method} failed (exit {process.returncode}); see {log}")
    path = re.findall(r"->\s+(\S+\.json)", text)
    if not path:
        raise SystemExit(f"{method}: no results path in the output; see {log}")
    return {**json.loads((ROOT / path[-1]).read_text()), "_path": path[-1]}, wall, peak


def top_answer_share(doc: dict) -> tuple[str, float]:
    """The most common test answer and its share: near 1.0 means the policy answers the same position whatever the
    prompt (a constant answer earns chance here, so a rise of the training reward can come from that alone)."""
    from collections import Counter

    from recbench.results import examples_file_of, read_examples

    rows = read_examples(examples_file_of(ROOT / doc["_path"], doc))
    answer, count = Counter(str(r.get("choice")) for r in rows).most_common(1)[0]
    return answer, count / max(1, len(rows))


def accuracy(doc: dict) -> tuple[float, float, float]:
    m = doc["metrics"]["accuracy"]
    return m["value"], m["ci_low"], m["ci_high"]


def plot_curve(name: str, curve: list[dict], path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("loss", "reward") if any(k in p for p in curve)]
    keys += sorted({k for p in curve for k in p if k.startswith("rewards/")})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(p["step"], p[key]) for p in curve if key in p]
        ax.plot(*zip(*points), marker=".", linewidth=1)
        window = max(1, len(points) // 8)  # one prompt per step is noisy: a running mean of ~1/8 of the run
        if window > 1:
            steps, values = zip(*points)
            smooth = [statistics.fmean(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]
            ax.plot(steps, smooth, linewidth=2, label=f"mean of {window}")
            ax.legend(fontsize=7)
        ax.set_title(f"{name}: {key}")
        ax.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path.relative_to(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        help="extra option for every recipe; task.* settings (e.g. task.max_test_examples=50) reach its start too")
    parser.add_argument("--out", default="benches/out/learning")
    args = parser.parse_args(argv)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in args.recipes.split(","):
        recipe, *own = entry.split(":")  # e.g. grpo:start=sft:start_examples=400
        options = dict(o.split("=", 1) for o in own)
        output = options.get("output") or answer_format(recipe)
        if options.get("start", "base") != "base":  # its start is that SFT recipe's checkpoint, run as its own row
            start = [f"preset={args.preset}", f"output={output}", *args.settings]
            start += [f"train_examples={options['start_examples']}"] if "start_examples" in options else []
            before, _, _ = run(options["start"], start, out / f"{recipe}-start.log")
        else:
            start = [f"output={output}", "max_new_tokens=160" if output == "reason" else "max_new_tokens=8"]
            start += [s for s in args.settings if s.startswith("task.")]  # the same test examples as the recipe
            before, _, _ = run("zero_shot", start, out / f"zero_shot-{output}.log")
        after, wall, peak = run(recipe, [f"preset={args.preset}", *args.settings, *own], out / f"{recipe}.log")
        fitted = after["method"].get("fitted", {})
        trial = next(iter(fitted.get("trials", {}).values()), {})
        png = plot_curve(recipe, fitted.get("curve") or [], out / f"{recipe}-curve.png") if fitted.get("curve") else "-"
        b, a = accuracy(before), accuracy(after)
        top, share = top_answer_share(after)
        rows.append({"recipe": entry, "output": output, "before": b, "after": a, "gain": a[0] - b[0],
                     "top_answer": top, "top_answer_share": round(share, 3),
                     "separated": a[1] > b[2], "train_s": sum(t.get("train_seconds") or 0 for t in fitted.get("trials", {}).values()),
                     "run_s": wall, "peak_gb": peak, "curve": png, "lr": fitted.get("lr"), "rows": fitted.get("train_rows"),
                     "reused": trial.get("reused")})
        print(_line(rows[-1]), flush=True)
    (out / "learning.json").write_text(json.dumps(rows, indent=1))
    print("\n| recipe | output | before | after | gain | CIs apart | top answer | train s | run s | peak GB | curve |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['recipe']} | {r['output']} | {_ci(r['before'])} | {_ci(r['after'])} | {r['gain']:+.2f} | "
              f"{'yes' if r['separated'] else 'no'} | {r['top_answer']} ({r['top_answer_share']:.0%}) | {r['train_s']:.0f} | {r['run_s']:.0f} | {r['peak_gb']:.1f} | {r['curve']} |")
    print(f"load average at the end: {os.getloadavg()}")
    return 0


def _ci(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def _line(r: dict) -> str:
    return (f"{r['recipe']}: {_ci(r['before'])} -> {_ci(r['after'])} ({r['gain']:+.2f}), "
            f"top answer {r['top_answer']} in {r['top_answer_share']:.0%}, train {r['train_s']:.0f} s, "
            f"run {r['run_s']:.0f} s, peak {r['peak_gb']:.1f} GB, lr {r['lr']}, rows {r['rows']}, curve {r['curve']}")


if __name__ == "__main__":
    sys.exit(main())
