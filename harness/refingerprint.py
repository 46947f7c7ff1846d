"""Re-fingerprint stored results after the fingerprint or run-id rules change, with proof.

    python -m recbench.refingerprint [--results-dir results] [--write]

For every results file this rebuilds the task from what the file records (task, dataset, params)
and proves the stored numbers belong to the current protocol before it touches anything:

1. every protocol key other than those whose *definition* changed (``fingerprint``,
   ``dataset_hash``, ``artwork_tables_hash``, ``tie_seed``) equals the current protocol's;
2. the per-example file lists exactly the current split's test examples, in order, with the same
   targets;
3. every metric recomputed from the stored predictions and the current split's targets equals the
   stored value (to 1e-9);
4. the method's code identity is taken from its module source at the git commit the result
   records (``git show``), not from today's source, so a result keeps the id of the code that
   produced it; a run from a dirty tree says so.

Only then, with ``--write``, it rewrites ``protocol``, ``dataset.content_hash``, ``method.code``,
``method.plugin`` and ``run_id`` (renaming the files), and records ``refingerprinted`` (old ids
and the checks). Without ``--write`` it only reports. A file that fails a check is left alone
and named: rerun it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.store import apply_filters, get_catalog
from recbench.metrics import Outcome, evaluate
from recbench.results import (
    EXAMPLES_SUFFIX, ResultStore, atomic_write_bytes, atomic_write_text, examples_path, make_run_id, method_code, now_iso,
    read_examples,
)
from recbench.runner import ORACLE, prepare_task_data

REDEFINED = {"fingerprint", "dataset_hash", "artwork_tables_hash", "tie_seed"}
REPO = Path(__file__).resolve().parent.parent


class Refused(Exception):
    """A check failed: the stored result cannot be carried over to the current fingerprint."""


def refingerprint(path: Path, registry: Any, pm: Any, *, write: bool, cache: dict) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    task, catalog = _task_and_catalog(doc, registry, cache)
    protocol = task.protocol(catalog)
    _same_protocol(doc["protocol"], protocol)
    data = cache.setdefault(("data", protocol["fingerprint"]), None) or prepare_task_data(task, catalog, protocol)
    cache[("data", protocol["fingerprint"])] = data
    checks = ["protocol keys equal but for " + ", ".join(sorted(REDEFINED & (set(doc["protocol"]) | set(protocol))))]
    if doc.get("ceiling") or doc["method"]["name"] == ORACLE:
        expected = task.ceiling(data)
        for name, entry in doc["metrics"].items():
            if abs(float(np.mean(expected[name])) - entry["value"]) > 1e-9:
                raise Refused(f"ceiling {name}: recomputed {np.mean(expected[name])} != stored {entry['value']}")
        checks.append(f"ceiling recomputed: {len(doc['metrics'])} metrics equal")
        code, config = None, {}
    else:
        rows = read_examples(examples_path(path))
        checks += _same_examples_and_metrics(doc, rows, task, catalog, data, registry)
        code = _code_at_commit(doc, registry, pm)
        checks.append(f"code identity from {code.pop('_from')}")
        config = _resolved(doc)
    run_id = make_run_id(doc["task"]["name"], protocol["fingerprint"], doc["method"]["name"], config, doc.get("seed", 0), code)
    change = {"run_id": (doc["run_id"], run_id), "fingerprint": (doc["protocol"]["fingerprint"], protocol["fingerprint"])}
    compress = not str(doc.get("examples_file", "")).endswith(".gz") and examples_path(path).is_file()
    if write and (run_id != doc["run_id"] or protocol != doc["protocol"] or compress):
        _rewrite(path, doc, protocol, catalog, code, run_id, checks)
    return {"file": str(path), "checks": checks, **change}


def _task_and_catalog(doc: dict[str, Any], registry: Any, cache: dict) -> tuple[Any, Any]:
    spec = registry.tasks.get(doc["task"]["name"])
    dataset = doc["protocol"].get("dataset") or spec.dataset
    if dataset != spec.dataset:
        spec = replace(spec, dataset=dataset)
    key = ("catalog", dataset, json.dumps(list(spec.filters), sort_keys=True))
    if key not in cache:
        cache[key] = apply_filters(get_catalog(registry.datasets.get(dataset)), list(spec.filters))
    params = dict(doc["task"].get("params") or {})
    task = registry.task_kinds.get(spec.kind)(spec, params)
    return task, cache[key].with_tie_seed(task.common.tie_seed)


def _same_protocol(old: dict[str, Any], new: dict[str, Any]) -> None:
    differ = sorted(k for k in (set(old) | set(new)) - REDEFINED if old.get(k) != new.get(k))
    if differ:
        shown = "; ".join(f"{k}: stored {json.dumps(old.get(k))[:120]} vs now {json.dumps(new.get(k))[:120]}" for k in differ)
        raise Refused(f"the protocol itself changed ({shown}); rerun this result")


def _same_examples_and_metrics(doc, rows, task, catalog, data, registry) -> list[str]:
    keys = [str(k) for k in data.test_inputs.keys]
    if [r["key"] for r in rows] != keys:
        raise Refused(f"the per-example file lists {len(rows)} examples that are not the current split's {len(keys)}")
    ids = task.ids(catalog)
    code_of = {str(v): i for i, v in enumerate(ids)}
    targets = data.test_targets
    for i, row in enumerate(rows):
        if [str(x) for x in row["targets"]] != [str(ids[c]) for c in targets.items_of(i)]:
            raise Refused(f"example {row['key']!r}: stored targets {row['targets']} differ from the current split's")
    k = max(len(r["predicted"]) for r in rows) if rows else 0
    items = np.full((len(rows), k), -1, np.int64)
    for i, row in enumerate(rows):
        for j, item in enumerate(row["predicted"]):
            items[i, j] = -1 if item is None else code_of[str(item)]
    outcome = Outcome.from_ranking(items, targets, extras=data.outcome)
    stored = doc["metrics"]
    evaluation = evaluate(outcome, list(stored), registry.metrics.entries, subsets=data.subsets, seed=doc.get("seed", 0))
    for name, entry in stored.items():
        now = evaluation.summary[name]
        for field in ("value", "ci_low", "ci_high"):
            if entry.get(field) is not None and abs(float(now[field]) - float(entry[field])) > 1e-9:
                raise Refused(f"{name} {field}: recomputed {now[field]} from the stored predictions != stored {entry[field]}")
    return [f"{len(rows)} examples and targets equal the current split's",
            f"{len(stored)} metrics (value and 95% CI) recomputed from the stored predictions: equal"]


def _code_at_commit(doc: dict[str, Any], registry: Any, pm: Any) -> dict[str, Any]:
    import inspect

    from recbench.manager import plugin_source

    name = doc["method"]["name"]
    cls = registry.methods.get(name)
    git = (doc.get("environment") or {}).get("git") or {}
    path = Path(inspect.getsourcefile(sys.modules[cls.__module__]) or "")
    source, where = None, None
    if git.get("commit"):
        rel = path.resolve().relative_to(REPO).as_posix() if path.resolve().is_relative_to(REPO) else None
        for candidate in _paths_at(git["commit"], rel, cls.__module__):
            done = subprocess.run(["git", "show", f"{git['commit']}:{candidate}"], cwd=REPO, capture_output=True)
            if done.returncode == 0:
                source, where = done.stdout, f"{candidate} at {git['commit'][:12]}" + (" (tree was dirty)" if git.get("dirty") else "")
                break
    if source is None:
        raise Refused(f"the source of {cls.__module__} at the recorded commit {git.get('commit')} cannot be read")
    version = ((doc.get("environment") or {}).get("packages") or {}).get("recbench", "?")
    plugin = doc["method"].get("plugin") or ""
    if plugin.startswith("recbench") and "built-in" in plugin:
        plugin = f"recbench {version} (built-in)"
    else:
        plugin = plugin_source(pm, pm.get_plugin(registry.methods.sources[name])) if not plugin else plugin
    return {**method_code(cls.__module__, source, plugin), "_from": where}


def _paths_at(commit: str, rel: str | None, module: str) -> list[str]:
    """Where the module's file was at ``commit`` (plugins moved into family folders since)."""
    paths = [rel] if rel else []
    stem = module.rsplit(".", 1)[-1]
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit], cwd=REPO, capture_output=True, text=True)
    paths += [p for p in listed.stdout.splitlines() if p.endswith(f"/{stem}.py") and p.startswith(("plugins/", "harness/"))]
    return list(dict.fromkeys(paths))


def _resolved(doc: dict[str, Any]) -> dict[str, Any]:
    """The config as the run resolved it: options left to a preset take the values it recorded."""
    config = dict(doc["method"].get("config") or {})
    resolved = (doc["method"].get("fitted") or {}).get("resolved") or {}
    return {k: (resolved[k] if v is None and k in resolved else v) for k, v in config.items()}


def _rewrite(path: Path, doc: dict[str, Any], protocol: dict[str, Any], catalog: Any, code: dict[str, Any] | None,
             run_id: str, checks: list[str]) -> None:
    old_id, old_examples = doc["run_id"], examples_path(path)
    doc = dict(doc)
    if run_id == old_id and doc.get("refingerprinted"):  # only compressing: keep the record of the first carry-over
        checks = doc["refingerprinted"]["checks"]
    else:
        doc["refingerprinted"] = {
            "at": now_iso(), "by": "python -m recbench.refingerprint --write",
            "from": {"run_id": old_id, "fingerprint": doc["protocol"]["fingerprint"],
                     "dataset_hash": doc["protocol"].get("dataset_hash")},
            "checks": checks,
        }
    doc["protocol"] = protocol
    doc["dataset"] = {**doc.get("dataset", {}), "content_hash": catalog.content_hash()}
    if code is not None:
        doc["method"] = {**doc["method"], "plugin": code["plugin"], "code": code}
    doc["run_id"] = run_id
    new = path.with_name(f"{run_id}.json")
    if old_examples.is_file():  # stored compressed from now on
        text = "".join(json.dumps(row) + "\n" for row in read_examples(old_examples))
        atomic_write_bytes(new.with_suffix(EXAMPLES_SUFFIX), gzip.compress(text.encode("utf-8"), mtime=0))
        if old_examples != new.with_suffix(EXAMPLES_SUFFIX):
            old_examples.unlink()
        doc["examples_file"] = new.with_suffix(EXAMPLES_SUFFIX).name
    atomic_write_text(new, json.dumps(doc, indent=2) + "\n")
    if new != path:
        path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbench.refingerprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--task", help="only this task's results")
    parser.add_argument("--write", action="store_true", help="rewrite the files that pass every check")
    args = parser.parse_args(argv)
    from recbench.manager import get_plugin_manager, load_registry

    pm = get_plugin_manager()
    registry = load_registry(pm)
    store, cache, refused = ResultStore(args.results_dir), {}, []
    for path, _ in list(store.iter_results(args.task)):
        if not path.is_file():  # replaced by a concurrent run since the listing
            continue
        try:
            report = refingerprint(path, registry, pm, write=args.write, cache=cache)
        except Refused as exc:
            refused.append(path)
            print(f"REFUSED {path}: {exc}", file=sys.stderr)
            continue
        print(f"ok {path}: run id {report['run_id'][0]} -> {report['run_id'][1]}, fingerprint "
              f"{report['fingerprint'][0]} -> {report['fingerprint'][1]}; " + "; ".join(report["checks"]))
    print(f"{len(refused)} refused", file=sys.stderr)
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
