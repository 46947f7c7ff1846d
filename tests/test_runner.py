"""The runner: the target barrier, prediction checks, results caching, resume and atomic writes."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest

from recbench import hookimpl
from recbench.cli import main
from recbench.errors import ConfigError, PredictionError, TargetLeakError, UnsupportedTaskError
from recbench.examples import Predictions
from recbench.manager import get_plugin_manager, load_registry
from recbench.method import Method, ScoringMethod
from recbench.plugins.classic.most_popular import MostPopular
from recbench.plugins.classic.random_baseline import RandomMethod
from recbench.results import ResultStore, read_examples
from recbench.runner import RunRequest, Runner
from recbench.testing import MethodConformance
from recbench.worker import IN_PROCESS


class TestRandomConformance(MethodConformance):
    method = RandomMethod


class TestMostPopularConformance(MethodConformance):
    method = MostPopular


def _runner(tmp_path, *methods):
    class Plugin:
        @hookimpl
        def recbench_register_methods(self, register):
            for m in methods:
                register(m)

    pm = get_plugin_manager(extra_plugins=(Plugin(),))
    return Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))


def _request(method, task="fullrank", **kw):
    return RunRequest(task, method, dataset="synthetic-tiny", quiet=True, **kw)


# --- the target barrier --------------------------------------------------------------------


class Peeker(ScoringMethod):
    """Tries every way it is given to reach the test targets."""

    name = "peeker"
    description = "tries to read targets"

    def predict(self, examples, contract):
        return Predictions(items=np.asarray(examples.targets))  # there is no such attribute


def test_method_cannot_read_targets_from_its_inputs(tmp_path):
    with pytest.raises(AttributeError) as err:
        _runner(tmp_path, Peeker).run(_request("peeker"))
    assert "targets" in str(err.value)
    assert any("method 'peeker' in predict()" in note for note in err.value.__notes__)
    assert not list((tmp_path / "results").rglob("*.json")), "a failed run must write no result"


def test_inputs_given_to_methods_hold_no_targets(tmp_path):
    received = []

    class Recorder(MostPopular):
        name = "recorder"

        def fit(self, data):
            received.append(data)
            super().fit(data)

        def predict(self, examples, contract):
            received.append(examples)
            return super().predict(examples, contract)

    _runner(tmp_path, Recorder).run(_request("recorder", isolation=IN_PROCESS))  # the recorder list lives here
    from recbench.testing import _contains_targets

    fit, *batches = received
    assert not any(_contains_targets(b) for b in batches)
    assert not _contains_targets(fit.train) and not _contains_targets(fit.valid)
    # the test targets themselves are absent from the training interactions
    for batch in batches:
        for row in range(len(batch)):
            user, as_of = batch.users[row], batch.as_of[row]
            later = fit.train[(fit.train["user"] == user) & (fit.train["timestamp"] > as_of)]
            assert later.empty


def test_leaky_task_is_stopped_before_the_method_runs(tmp_path, monkeypatch):
    from recbench.tasks.fullrank import FullRankTask

    original = FullRankTask.build
    fitted = []

    def leaky_build(self, catalog):
        data = original(self, catalog)
        return replace(data, fit=replace(data.fit, train=catalog.interactions))  # everything, targets included

    class Spy(MostPopular):
        name = "spy"

        def fit(self, data):
            fitted.append(True)

    monkeypatch.setattr(FullRankTask, "build", leaky_build)
    with pytest.raises(TargetLeakError, match="test target interaction"):
        _runner(tmp_path, Spy).run(_request("spy", isolation=IN_PROCESS))
    assert not fitted


# --- prediction checks ---------------------------------------------------------------------


def _first_seen_then_unseen(examples, row, k, n_items):
    seen = examples.histories.items_of(row)
    unseen = np.setdiff1d(np.arange(n_items), seen)[: k - 1]
    return np.r_[seen[:1], unseen, np.full(k - 1 - len(unseen), -1)]


def _bad_method(name, make):
    return type(name.title(), (ScoringMethod,), {
        "name": name, "description": "returns garbage",
        "predict": lambda self, examples, contract: make(examples, contract, self.catalog.n_items),
    })


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("wrong_type", lambda e, c, n: [[1, 2, 3]] * len(e), "must return recbench.Predictions"),
        ("wrong_shape", lambda e, c, n: Predictions(items=np.zeros((len(e), 3), int)), "has shape"),
        ("duplicates", lambda e, c, n: Predictions(items=np.tile(np.r_[[0, 0], np.arange(2, c.k)], (len(e), 1))), "duplicate"),
        ("out_of_range", lambda e, c, n: Predictions(items=np.full((len(e), c.k), 10_000)), "must be in"),
        ("float_ids", lambda e, c, n: Predictions(items=np.zeros((len(e), c.k))), "integer item codes"),
        ("nan_scores", lambda e, c, n: Predictions(items=np.tile(np.arange(c.k), (len(e), 1)),
                                                scores=np.full((len(e), c.k), np.nan)), "NaN"),
        ("seen", lambda e, c, n: Predictions(items=np.array([_first_seen_then_unseen(e, i, c.k, n) for i in range(len(e))])),
         "in the user's history"),
        ("holes", lambda e, c, n: Predictions(items=np.tile(np.r_[-1, np.arange(1, c.k)], (len(e), 1))), "empty"),
    ],
)
def test_invalid_predictions_are_rejected_with_method_and_example(tmp_path, name, make, message):
    with pytest.raises(PredictionError) as err:
        _runner(tmp_path, _bad_method(name, make)).run(_request(name, isolation=IN_PROCESS))
    text = str(err.value)
    assert message in text and f"method {name!r}" in text


def test_candidate_contract_requires_a_permutation(tmp_path):
    method = _bad_method("shuffler", lambda e, c, n: Predictions(items=np.repeat(e.candidates[:, :1], e.candidates.shape[1], axis=1)))
    with pytest.raises(PredictionError, match="not a permutation of the candidates"):
        _runner(tmp_path, method).run(_request("shuffler", task="rerank", isolation=IN_PROCESS))


def test_unsupported_task_lists_methods_that_support_it(tmp_path):
    class OnlyCandidates(Method):
        name = "only_candidates"
        description = "candidate scoring only"
        contracts = frozenset({"candidates"})

    with pytest.raises(UnsupportedTaskError, match="does not support task 'fullrank'.*most_popular"):
        _runner(tmp_path, OnlyCandidates).run(_request("only_candidates"))


def test_item_methods_refuse_artwork_candidates(tmp_path):
    with pytest.raises(UnsupportedTaskError, match="over 'artworks'.*Methods for 'artwork': .*production"):
        _runner(tmp_path).run(RunRequest("artwork", "most_popular", dataset="artwork-tiny", quiet=True))
    assert "artwork" not in load_registry().tasks_supported_by(MostPopular)
    assert "artwork" in load_registry().tasks_supported_by(RandomMethod)


def test_unknown_config_key_names_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'min_ratng'.*Did you mean 'min_rating'"):
        _runner(tmp_path).run(_request("most_popular", cli_settings={"min_ratng": "4"}))
    with pytest.raises(ConfigError, match="expected float"):
        _runner(tmp_path).run(_request("most_popular", cli_settings={"min_rating": "high"}))


def test_metric_cutoff_above_prediction_length_fails_before_fitting(tmp_path):
    with pytest.raises(ConfigError, match="needs 20 ranked items but predictions hold 10"):
        _runner(tmp_path).run(_request("most_popular", task_settings={"k": "10"}))


# --- results, caching, resume --------------------------------------------------------------


def test_result_document_follows_the_schema(tmp_path):
    outcome = _runner(tmp_path).run(_request("most_popular", cli_settings={"min_rating": "4"}))
    doc = json.loads(outcome.path.read_text())
    for key in ("schema", "run_id", "created_at", "command", "task", "dataset", "protocol", "method", "seed",
                "n_examples", "metrics", "primary_metric", "diagnostics", "timing", "environment", "examples_file"):
        assert key in doc, key
    assert doc["method"]["config"] == {"min_rating": 4.0}
    assert doc["command"] == (
        "recbench run --task fullrank --method most_popular --dataset synthetic-tiny --seed 0 --set min_rating=4.0"
    )
    assert doc["protocol"]["fingerprint"] and doc["task"]["version"] == 1
    assert doc["environment"]["packages"]["numpy"]
    assert doc["timing"]["predict_batch"] == 256  # the leaderboard's latency table states it
    ndcg = doc["metrics"]["ndcg@10"]
    assert ndcg["ci_low"] <= ndcg["value"] <= ndcg["ci_high"]
    assert doc["examples_file"].endswith(".examples.jsonl.gz")  # stored compressed
    rows = read_examples(outcome.path.parent / doc["examples_file"])
    assert len(rows) == doc["n_examples"]
    assert np.mean([r["metrics"]["ndcg@10"] for r in rows]) == pytest.approx(ndcg["value"])
    assert all(len(r["predicted"]) == 20 and len(r["targets"]) == 1 for r in rows)


def test_max_test_examples_draws_the_same_subset_for_every_method(tmp_path):
    runner = _runner(tmp_path)
    full = runner.run(_request("most_popular")).document
    small = {m: runner.run(_request(m, task_settings={"max_test_examples": "7"})).document for m in ("most_popular", "random")}
    keys = {}
    for method, doc in small.items():
        assert doc["n_examples"] == 7 and doc["task"]["params"]["max_test_examples"] == 7
        assert doc["task"]["stats"]["test_examples_before_subsample"] == full["n_examples"]
        assert doc["protocol"]["fingerprint"] != full["protocol"]["fingerprint"]
        assert "--set task.max_test_examples=7" in doc["command"]
        rows = read_examples(tmp_path / "results" / "fullrank" / method / doc["examples_file"])
        keys[method] = [r["key"] for r in rows]
    assert keys["most_popular"] == keys["random"] and len(set(keys["random"])) == 7
    assert "test_subsample" not in full["protocol"]  # full runs keep their fingerprint
    with pytest.raises(ConfigError, match="max_test_examples must be at least 1"):
        runner.run(_request("random", task_settings={"max_test_examples": "0"}))


def test_repeat_run_is_answered_from_results_unless_forced(tmp_path):
    fits = []

    class Counting(MostPopular):
        name = "counting"

        def fit(self, data):
            fits.append(1)
            super().fit(data)

    runner = _runner(tmp_path, Counting)
    first = runner.run(_request("counting", isolation=IN_PROCESS))  # in process: `fits` counts here
    second = runner.run(_request("counting", isolation=IN_PROCESS))
    assert second.cached and second.document["run_id"] == first.document["run_id"] and len(fits) == 1
    third = runner.run(_request("counting", force=True, isolation=IN_PROCESS))
    assert not third.cached and len(fits) == 2
    other_seed = runner.run(_request("counting", seed=1, isolation=IN_PROCESS))
    assert not other_seed.cached and other_seed.document["run_id"] != first.document["run_id"]



@pytest.mark.parametrize("damage", ["delete", "edit"])
def test_a_result_whose_per_example_file_is_gone_or_changed_is_no_cached_answer(tmp_path, capsys, damage):
    from recbench.leaderboard import render_leaderboard

    runner = _runner(tmp_path)
    first = runner.run(_request("most_popular"))
    examples = first.path.parent / first.document["examples_file"]
    assert first.document["examples_sha256"]
    if damage == "delete":
        examples.unlink()
    else:
        examples.write_bytes(examples.read_bytes()[:-8])
    board = render_leaderboard("fullrank", runner.store).markdown
    assert "examples missing" in board and "--force` restores it" in board
    again = runner.run(_request("most_popular"))
    assert not again.cached and examples.is_file()  # recomputed, both files rewritten
    assert "is incomplete" in capsys.readouterr().err
    assert runner.run(_request("most_popular")).cached
    assert "examples missing" not in render_leaderboard("fullrank", runner.store).markdown


def test_results_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        outcome = _runner(tmp_path).run(_request("most_popular"))
    finally:
        os.umask(old)
    for path in (outcome.path, outcome.path.parent / outcome.document["examples_file"]):
        assert oct(path.stat().st_mode & 0o777) == oct(0o644), path

def test_interrupted_sweep_resumes_and_leaves_no_partial_files(tmp_path, monkeypatch):
    calls = []

    class Fragile(MostPopular):
        name = "fragile"
        explode = True

        def predict(self, examples, contract):
            calls.append(self.seed)
            if Fragile.explode and self.seed == 1:
                raise KeyboardInterrupt
            return super().predict(examples, contract)

    runner = _runner(tmp_path, Fragile)
    with pytest.raises(KeyboardInterrupt):
        for seed in (0, 1, 2):
            runner.run(_request("fragile", seed=seed, isolation=IN_PROCESS))
    results = tmp_path / "results" / "fullrank" / "fragile"
    assert len(list(results.glob("*.json"))) == 1
    assert not list(results.glob(".*tmp"))
    Fragile.explode = False
    calls.clear()
    outcomes = [runner.run(_request("fragile", seed=seed, isolation=IN_PROCESS)) for seed in (0, 1, 2)]
    assert [o.cached for o in outcomes] == [True, False, False]
    assert set(calls) == {1, 2}


def test_crash_while_writing_keeps_the_previous_result(tmp_path, monkeypatch):
    runner = _runner(tmp_path)
    outcome = runner.run(_request("most_popular"))
    before = outcome.path.read_text()

    import recbench.results as results

    def broken(obj, *a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(results.json, "dumps", broken)
    with pytest.raises(OSError, match="disk full"):
        runner.run(_request("most_popular", force=True))
    monkeypatch.undo()
    assert outcome.path.read_text() == before
    assert not [p for p in outcome.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_cli_sweep_and_printed_command_reproduce_the_same_run(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["run", "--task", "rerank", "--method", "random,most_popular", "--dataset", "synthetic-tiny",
            "--seed", "0,1", "--results-dir", str(out), "-q"]
    assert main(argv) == 0
    docs = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert len(docs) == 4
    command = next(d["command"] for d in docs if d["method"]["name"] == "random" and d["seed"] == 1)
    capsys.readouterr()
    assert main([*command.split()[1:], "--results-dir", str(out), "-q"]) == 0
    assert "True" in capsys.readouterr().out  # answered from the existing result
    assert main(["leaderboard", "--task", "rerank", "--results-dir", str(out), "--out", str(tmp_path / "lb")]) == 0
    board = (tmp_path / "lb" / "rerank.md").read_text()
    assert "recall@1[discovery]" in board and "most_popular" in board


def test_random_is_beaten_by_popularity_on_fullrank(tmp_path):
    runner = _runner(tmp_path)
    pop = runner.run(_request("most_popular")).document["metrics"]["hr@10"]["value"]
    rand = runner.run(_request("random")).document["metrics"]["hr@10"]["value"]
    assert pop > rand


def test_results_written_before_the_digest_are_checked_by_row_count(tmp_path):
    """Older results files have no examples_sha256: their per-example rows are counted instead."""
    import gzip

    from recbench.results import examples_problem

    path = tmp_path / "r.json"
    (tmp_path / "r.examples.jsonl.gz").write_bytes(gzip.compress(b'{"key": "1"}\n{"key": "2"}\n'))
    doc = {"run_id": "r", "examples_file": "r.examples.jsonl.gz", "n_examples": 2}
    assert examples_problem(path, doc) is None
    assert "holds 2 rows, not 3" in examples_problem(path, {**doc, "n_examples": 3})
    (tmp_path / "r.examples.jsonl.gz").write_bytes(gzip.compress(b""))
    assert examples_problem(path, {**doc, "ceiling": True}) is None  # a ceiling row keeps no per-example outputs
    assert "is missing" in examples_problem(path, {**doc, "examples_file": "gone.jsonl.gz"})


def test_a_task_that_repeats_a_test_key_is_refused(tmp_path):
    """Per-example files, paired tests and caches are keyed by example: two examples may not share a key."""
    from recbench.runner import check_unique_keys

    runner = _runner(tmp_path)
    plan = runner.plan(_request("most_popular"))
    data = runner.prepare(plan.task, plan.catalog, plan.protocol)
    check_unique_keys(plan.task, data.test_inputs)  # the built-in kinds give unique keys
    keys = np.asarray(data.test_inputs.keys, dtype=object).copy()
    keys[1] = keys[0]
    with pytest.raises(Exception, match=r"gives 1 test example\(s\) a key another one has"):
        check_unique_keys(plan.task, replace(data.test_inputs, keys=keys))
