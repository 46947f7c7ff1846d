"""Fingerprints and run ids: every table is in the dataset hash, the same data hashes alike in any
home, the split cache follows the split code, and the run id follows the method's code and preset."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from recbench.data.store import get_catalog
from recbench.manager import get_plugin_manager, load_registry
from recbench.results import ResultStore, make_run_id, method_code, resolved_config
from recbench.runner import RunRequest, Runner


def _plan(task="fullrank", dataset="synthetic-tiny", **settings):
    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore())
    return runner.plan(RunRequest(task, "random" if task == "artwork" else "most_popular", dataset=dataset, quiet=True,
                                  task_settings=settings))


def test_artwork_protocol_fingerprint_agrees_across_two_homes(tmp_path, monkeypatch):
    prints = []
    for home in ("a", "b"):
        monkeypatch.setenv("RECBENCH_HOME", str(tmp_path / home))
        built = _plan("artwork", "artwork-tiny").protocol  # built by the simulator in this home
        cached = _plan("artwork", "artwork-tiny").protocol  # read back from this home's parquet cache
        assert built == cached
        prints.append(built)
    assert prints[0]["fingerprint"] == prints[1]["fingerprint"] and prints[0]["dataset_hash"] == prints[1]["dataset_hash"]
    loaded = get_catalog(load_registry().datasets.get("artwork-tiny"))  # the hash recorded in catalog.json...
    assert loaded.content_hash() == replace(loaded, name=loaded.name).content_hash()  # ...is the recomputed one


@pytest.mark.parametrize("table, column, value", [("items", "title", "renamed"), ("users", "age", 99),
                                                   ("table-artworks", "caption", "another caption")])
def test_every_table_moves_the_dataset_hash(table, column, value):
    catalog = get_catalog(load_registry().datasets.get("artwork-tiny"))
    before = catalog.content_hash()
    frames = {"items": catalog.items, "users": catalog.users, **{f"table-{n}": f for n, f in catalog.tables.items()}}
    frame = frames[table].copy()
    if column not in frame:
        pytest.skip(f"{table} has no {column}")
    frame.loc[frame.index[:5], column] = value
    if table == "items":
        changed = replace(catalog, items=frame)
    elif table == "users":
        changed = replace(catalog, users=frame)
    else:
        changed = replace(catalog, tables={**catalog.tables, table[6:]: frame})
    assert changed.content_hash() != before


def test_hash_ignores_dtype_width_and_float_noise():
    catalog = get_catalog(load_registry().datasets.get("synthetic-tiny"))
    inter = catalog.interactions.copy()
    inter["timestamp"] = inter["timestamp"].astype(np.int64)
    inter["rating"] = inter["rating"].astype(np.float64) + 1e-12  # last-bit noise from another BLAS
    assert replace(catalog, interactions=inter).content_hash() == catalog.content_hash()
    inter["rating"] = inter["rating"] + 0.5
    assert replace(catalog, interactions=inter).content_hash() != catalog.content_hash()


def test_split_cache_key_covers_split_code_and_tie_rule(tmp_path, monkeypatch):
    import recbench.split_cache as split_cache
    import recbench.splits

    plan = _plan()
    base = split_cache.code_identity(plan.task)
    edited = tmp_path / "splits.py"
    edited.write_text(open(recbench.splits.__file__).read() + "\n# a changed split rule\n")
    monkeypatch.setattr(recbench.splits, "__file__", str(edited))
    assert split_cache.code_identity(plan.task) != base
    monkeypatch.undo()
    monkeypatch.setattr(split_cache, "TIE_RULE", "timestamp,item_code")
    assert split_cache.code_identity(plan.task) != base


def test_tie_seed_is_in_the_fingerprint_and_reorders_ties():
    default, other = _plan(), _plan(tie_seed="3")
    assert default.protocol["tie_seed"] == 0 and other.protocol["tie_seed"] == 3
    assert default.protocol["fingerprint"] != other.protocol["fingerprint"]
    a, b = default.catalog.interactions, other.catalog.interactions
    assert sorted(map(tuple, a.to_numpy().tolist())) == sorted(map(tuple, b.to_numpy().tolist()))  # same rows
    tied = a.duplicated(["user", "timestamp"], keep=False).any()
    assert not tied or not a.equals(b)


def test_run_id_follows_method_code_and_resolved_preset():
    code = method_code("m", "def fit(): pass\n", "pkg 1.0")
    ids = {
        make_run_id("t", "fp", "m", {"lr": 0.1}, 0, code),
        make_run_id("t", "fp", "m", {"lr": 0.1}, 0, method_code("m", "def fit(): return 1\n", "pkg 1.0")),
        make_run_id("t", "fp", "m", {"lr": 0.1}, 0, method_code("m", "def fit(): pass\n", "pkg 1.1")),
        make_run_id("t", "fp", "m", {"lr": 0.2}, 0, code),
    }
    assert len(ids) == 4
    assert make_run_id("t", "fp", "m", {"lr": 0.1}, 0, code) in ids  # the same inputs, the same id

    @dataclass(frozen=True)
    class Preset:
        lr: float | None = None

        def resolved(self):
            return replace(self, lr=0.01 if self.lr is None else self.lr)

    assert resolved_config(Preset()).lr == 0.01 and resolved_config(Preset(0.5)).lr == 0.5


def test_refingerprint_proves_and_rewrites_an_old_result(tmp_path):
    from recbench.refingerprint import main

    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    doc = runner.run(RunRequest("fullrank", "most_popular", dataset="synthetic-tiny", quiet=True)).document
    folder = tmp_path / "results" / "fullrank" / "most_popular"
    old = dict(doc, run_id="0ld0ld0ld0ld", protocol={**doc["protocol"], "fingerprint": "0ld", "dataset_hash": "0ld"})
    (folder / f"{doc['run_id']}.json").rename(folder / "0ld0ld0ld0ld.json")
    (folder / doc["examples_file"]).rename(folder / "0ld0ld0ld0ld.examples.jsonl.gz")
    (folder / "0ld0ld0ld0ld.json").write_text(json.dumps(old))
    assert main(["--results-dir", str(tmp_path / "results"), "--write"]) == 0
    (path,) = folder.glob("*.json")
    new = json.loads(path.read_text())
    assert new["protocol"]["fingerprint"] == doc["protocol"]["fingerprint"]
    assert new["refingerprinted"]["from"]["run_id"] == "0ld0ld0ld0ld" and new["metrics"] == doc["metrics"]
    assert new["method"]["code"]["source_sha256"] == doc["method"]["code"]["source_sha256"]
    # a hand-edited number is refused, and the file left alone
    new["metrics"]["ndcg@10"]["value"] += 0.01
    new["protocol"]["fingerprint"] = "0ld"
    path.write_text(json.dumps(new))
    assert main(["--results-dir", str(tmp_path / "results"), "--write"]) == 1
    assert json.loads(path.read_text())["protocol"]["fingerprint"] == "0ld"


def test_ties_command_reports_the_spread_over_tie_seeds(tmp_path, capsys):
    from recbench.cli import main
    from recbench.ties import tie_spread

    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    request = RunRequest("fullrank", "most_popular", dataset="synthetic-tiny", quiet=True)
    spread = tie_spread(runner, request, 3, "hr@10")
    assert spread.default == pytest.approx(runner.run(request).document["metrics"]["hr@10"]["value"])  # seed 0: the protocol
    summary = spread.summary()
    assert summary["seeds"] == 3 and summary["min"] <= summary["mean"] <= summary["max"]
    assert summary["sd"] == pytest.approx(float(np.std(spread.values, ddof=1)), abs=1e-4)
    assert not list((tmp_path / "results").glob("fullrank/most_popular/*.json"))[1:]  # only the reference run above
    assert main(["ties", "--task", "fullrank", "--method", "most_popular", "--dataset", "synthetic-tiny", "--seeds", "2"]) == 0
    assert "percentile of seed 0" in capsys.readouterr().out


def test_code_identity_covers_every_module_the_method_and_task_import(tmp_path, monkeypatch):
    """A prompt builder edited in shared code (imported at module or function level, relatively or not) reruns."""
    from recbench.results import source_closure

    pkg = tmp_path / "closurepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "method.py").write_text("from closurepkg.sub import prompts\n\ndef f():\n    from .sub.reader import read\n")
    (pkg / "sub" / "prompts.py").write_text("TEMPLATE = 'a'\n")
    (pkg / "sub" / "reader.py").write_text("def read(): pass\n")
    (pkg / "unused.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = source_closure(["closurepkg.method"], package="closurepkg")
    assert set(first) == {"closurepkg", "closurepkg.sub", "closurepkg.method", "closurepkg.sub.prompts", "closurepkg.sub.reader"}
    (pkg / "sub" / "reader.py").write_text("def read(): return 1\n")
    second = source_closure(["closurepkg.method"], package="closurepkg")
    assert second["closurepkg.sub.reader"] != first["closurepkg.sub.reader"]
    assert {k: v for k, v in second.items() if k != "closurepkg.sub.reader"} == {
        k: v for k, v in first.items() if k != "closurepkg.sub.reader"}
