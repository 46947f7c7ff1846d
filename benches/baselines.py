"""Fit time, evaluation time, peak memory and metrics of every classic baseline on ML-100K.

    .venv/bin/python benches/baselines.py [--task fullrank] [--methods ease,sasrec] [--json PATH]

Runs each method through the real runner (results go to a temporary folder, never the repo's),
so regressions in speed or quality show up here. Targets on 2 CPU cores: SASRec reaches its
validation optimum in under 5 minutes; full-ranking evaluation of all ML-100K users (the
runner's predict + contract check) takes under 2 seconds for every baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

BASELINES = ("random", "most_popular", "ease", "nmf", "als", "bpr", "lightgcn", "sasrec", "bert4rec")


class PeakRSS:
    """Samples this process's resident memory every 50 ms; ``peak`` in MiB over the window."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()

    def _rss(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self) -> PeakRSS:
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _chosen(fitted: dict) -> str:
    """What validation chose: a method's ``chosen`` record, or a sequential model's dropout and epochs."""
    if "chosen" in fitted:
        return json.dumps(fitted["chosen"])[:60]
    keys = ("dropout", "best_epoch", "epochs_run", "train_seconds")
    return json.dumps({k: fitted[k] for k in keys if k in fitted})[:80]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="fullrank")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--methods", default=",".join(BASELINES))
    parser.add_argument("--json", help="also write the rows as JSON to this path")
    args = parser.parse_args()

    from tabulate import tabulate

    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner

    pm = get_plugin_manager()
    registry = load_registry(pm)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(registry, pm, ResultStore(Path(tmp)))
        for name in [m for m in args.methods.split(",") if m]:
            with PeakRSS() as memory:
                start = time.perf_counter()
                doc = runner.run(RunRequest(args.task, name, dataset=args.dataset, quiet=True, force=True)).document
                wall = time.perf_counter() - start
            metrics = doc["metrics"]
            primary = doc["primary_metric"]
            rows.append({
                "method": name,
                "fit s": doc["timing"]["fit_s"],
                "eval s": doc["timing"]["predict_s"] + doc["timing"]["evaluate_s"],
                "wall s": round(wall, 2),
                "peak RSS MiB": round(memory.peak),
                primary: round(metrics[primary]["value"], 4),
                **{m: round(metrics[m]["value"], 4) for m in ("hr@10", "ndcg@10") if m in metrics and m != primary},
                "chosen": _chosen(doc["method"]["fitted"] or {}),
            })
            print(f"{name}: done in {wall:.1f}s", file=sys.stderr)
    print(tabulate(rows, headers="keys", tablefmt="github"))
    print(f"\nmax RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"{os.cpu_count()} CPUs; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
