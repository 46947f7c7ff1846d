"""Cached catalogs and prepared splits are hashed when written and checked before use."""

from __future__ import annotations

import json
import pickle

import pytest

from recbench.manager import get_plugin_manager, load_registry
from recbench.results import ResultStore
from recbench.runner import RunRequest, Runner
from recbench.split_cache import splits_dir

FULLRANK = dict(dataset="synthetic-tiny", quiet=True)


def _runner(tmp_path) -> Runner:
    pm = get_plugin_manager()
    return Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))


def _ndcg(outcome) -> float:
    return outcome.document["metrics"]["ndcg@10"]["value"]


def _split_folder():
    (folder,) = [p for p in splits_dir().iterdir() if p.is_dir()]
    return folder


def test_split_cache_keeps_targets_apart_from_inputs(tmp_path):
    _runner(tmp_path).run(RunRequest("fullrank", "most_popular", **FULLRANK))
    folder = _split_folder()
    assert sorted(p.name for p in folder.iterdir()) == ["inputs.pkl", "manifest.json", "targets.pkl"]
    inputs = pickle.loads((folder / "inputs.pkl").read_bytes())
    assert not hasattr(inputs, "test_targets") and len(inputs.test_inputs) > 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"inputs.pkl", "targets.pkl"} and len(manifest["mac"]) == 64


def _poison(folder):
    """The audit's attack: rewrite the cached targets to the most popular item, re-hash the manifest."""
    import hashlib

    targets = pickle.loads((folder / "targets.pkl").read_bytes())
    inputs = pickle.loads((folder / "inputs.pkl").read_bytes())
    popular = inputs.fit.train["item"].value_counts().index[0]
    targets.test_targets.items[:] = popular
    blob = pickle.dumps(targets)
    (folder / "targets.pkl").write_bytes(blob)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["targets.pkl"] = hashlib.sha256(blob).hexdigest()  # without the home's key: unsigned
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["poison", "truncate", "flip_byte", "drop_manifest"])
def test_damaged_split_cache_is_detected_reported_and_rebuilt(tmp_path, capsys, damage):
    runner = _runner(tmp_path)
    honest = _ndcg(runner.run(RunRequest("fullrank", "most_popular", **FULLRANK)))
    folder = _split_folder()
    if damage == "poison":
        _poison(folder)
    elif damage == "truncate":
        blob = (folder / "targets.pkl").read_bytes()
        (folder / "targets.pkl").write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_byte":
        blob = bytearray((folder / "inputs.pkl").read_bytes())
        blob[len(blob) // 2] ^= 1
        (folder / "inputs.pkl").write_bytes(bytes(blob))
    else:
        (folder / "manifest.json").unlink()
    capsys.readouterr()
    again = runner.run(RunRequest("fullrank", "most_popular", force=True, **FULLRANK))
    err = capsys.readouterr().err
    assert "warning: split cache" in err and "rebuilding it" in err
    assert _ndcg(again) == pytest.approx(honest)
    assert json.loads((_split_folder() / "manifest.json").read_text())["mac"]  # rebuilt and signed


def test_poisoned_split_cache_would_have_raised_the_score(tmp_path):
    """Without the check the poison works: loading the poisoned files directly scores higher."""
    from recbench.split_cache import load

    runner = _runner(tmp_path)
    runner.run(RunRequest("fullrank", "most_popular", **FULLRANK))
    folder = _split_folder()
    honest = load(folder)
    _poison(folder)
    targets = pickle.loads((folder / "targets.pkl").read_bytes()).test_targets
    assert (targets.items != honest.test_targets.items).mean() > 0.5  # the files now say something else
    from recbench.split_cache import CacheIntegrityError

    with pytest.raises(CacheIntegrityError, match="not signed by this recbench home"):
        load(folder)


@pytest.mark.parametrize("damage", ["edit_title", "truncate"])
def test_damaged_dataset_cache_is_detected_reported_and_rebuilt(tmp_path, capsys, damage):
    import pandas as pd

    from recbench.data.store import cached_catalog_dir, get_catalog

    spec = load_registry().datasets.get("synthetic-tiny")
    first = get_catalog(spec)
    path = cached_catalog_dir("synthetic-tiny") / "items.parquet"
    if damage == "edit_title":  # the audit renamed cached titles
        items = pd.read_parquet(path)
        items.loc[:4, "title"] = "renamed"
        items.to_parquet(path)
    else:
        path.write_bytes(path.read_bytes()[:100])
    capsys.readouterr()
    again = get_catalog(spec)
    err = capsys.readouterr().err
    assert "does not match its recorded SHA-256" in err and "rebuilding it" in err
    pd.testing.assert_frame_equal(again.items, first.items)
    assert get_catalog(spec).items["title"].iloc[0] != "renamed"
