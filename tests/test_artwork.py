"""The artwork task: simulator, splits, barrier, ceiling, metrics through the task, real-log schema, baselines."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from recbench import hookimpl
from recbench.cli import main
from recbench.data import artwork_sim
from recbench.data.artwork_captions import FACETS, GENRE_FACETS, SCENES
from recbench.errors import DatasetError, TargetLeakError
from recbench.examples import Predictions
from recbench.leaderboard import render_leaderboard
from recbench.manager import get_plugin_manager, load_registry
from recbench.method import Method
from recbench.plugins.datasets.artwork_data import TINY_CONFIG, TINY_SYNTHETIC, load_artwork_tiny
from recbench.plugins.datasets.artwork_logs import add_artwork_logs, load_artwork_logs
from recbench.plugins.artwork.most_chosen import MostChosen
from recbench.plugins.artwork.production import Production, ProductionConfig
from recbench.plugins.classic.random_baseline import RandomMethod
from recbench.results import ResultStore, read_examples
from recbench.runner import RunRequest, Runner
from recbench.task import TaskSpec
from recbench.tasks.artwork import METHOD_COLUMNS, ArtworkTask, artwork_tables_hash
from recbench.testing import MethodConformance, run_method

SIZES = {"n_train": 2000, "n_valid": 300, "n_test": 800}
FAST_PRODUCTION = ProductionConfig(caption_dim=16, l2_grid=(10.0,), max_iter=100)


@lru_cache(maxsize=None)
def tiny_catalog():
    return load_artwork_tiny(None)


def tiny_task(kind: str = "artwork", params: dict | None = None):
    """The artwork equivalent of ``recbench.testing.tiny_task``: the task built on ``artwork-tiny``."""
    spec = TaskSpec(name="tiny-artwork", version=1, kind=kind, dataset="artwork-tiny", description="conformance",
                    metrics=("ips", "accuracy", "snips"), primary_metric="ips", params={**SIZES, **(params or {})})
    task = ArtworkTask(spec)
    return task, task.build(tiny_catalog())


@lru_cache(maxsize=None)
def tiny_data():
    return tiny_task()


class FirstOption(Method):
    """Always ranks the candidates in option order: picks option 1."""

    name = "first_option"
    description = "option order"
    contracts = frozenset({"candidates"})
    candidate_tables = frozenset({"artworks"})

    def predict(self, examples, contract):
        return Predictions(items=examples.candidates.copy())


class FirstOptionPlugin:
    @hookimpl
    def recbench_register_methods(self, register):
        register(FirstOption)


# --- the simulator ---------------------------------------------------------------------------


def test_simulation_is_deterministic_from_its_seed():
    from recbench.plugins.datasets.synthetic import make_synthetic

    base = make_synthetic(**TINY_SYNTHETIC, name="synthetic")
    again = artwork_sim.simulate(base, TINY_CONFIG, "artwork-tiny")
    assert artwork_tables_hash(again) == artwork_tables_hash(tiny_catalog())
    pd.testing.assert_frame_equal(again.tables["artwork_truth"], tiny_catalog().tables["artwork_truth"])
    other = artwork_sim.simulate(base, dataclasses.replace(TINY_CONFIG, seed=1), "artwork-tiny")
    assert artwork_tables_hash(other) != artwork_tables_hash(tiny_catalog())


def test_option_counts_stay_in_range_with_the_documented_skew():
    popularity = np.random.default_rng(0).zipf(1.5, 5000)
    counts = artwork_sim.option_counts(popularity, artwork_sim.SimulatorConfig())
    assert counts.min() == 4 and counts.max() == 40
    assert 6 <= np.median(counts) <= 11, "most titles have few options"
    assert 0.05 <= (counts >= 20).mean() <= 0.25, "some have many"
    top = counts[popularity >= np.quantile(popularity, 0.9)].mean()
    assert top > counts[popularity <= np.quantile(popularity, 0.5)].mean(), "popular titles get more artworks"
    per_title = tiny_catalog().tables["artworks"].groupby("item").size()
    assert per_title.between(4, 40).all() and len(per_title) == TINY_SYNTHETIC["n_items"]


def test_captions_describe_scenes_without_naming_genres():
    names = [g.lower().replace("'s", "") for g in GENRE_FACETS] + ["noir", "sci-fi"]
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")
    assert set(SCENES) == set(FACETS)
    bank_hits = [s for bank in SCENES.values() for s in bank if pattern.search(s.lower())]
    assert not bank_hits
    captions = tiny_catalog().tables["artworks"]["caption"]
    assert not captions.str.lower().str.contains(pattern).any()
    words = captions.str.split().str.len()
    assert words.min() >= 30 and words.max() <= 220


def test_logged_choices_and_ceiling_match_a_monte_carlo_of_the_simulator():
    catalog = tiny_catalog()
    log = catalog.tables["artwork_log"]
    indptr, codes, probs = artwork_sim.choice_probabilities(catalog, log, TINY_CONFIG)
    np.testing.assert_allclose(np.maximum.reduceat(probs, indptr[:-1]), log["p_best"], rtol=1e-9)
    np.testing.assert_allclose(1.0 / np.diff(indptr), log["propensity"])
    # the logged choice is the Bayes-optimal one as often as p_best says (binomial tolerance)
    best = codes[indptr[:-1] + np.array([np.argmax(probs[a:b]) for a, b in zip(indptr[:-1], indptr[1:])])]
    matches = (log["chosen"].to_numpy() == best).mean()
    assert abs(matches - log["p_best"].mean()) < 4 * np.sqrt(0.25 / len(log))
    # the task's reported ceiling equals the accuracy of the Bayes-optimal pick on simulated draws
    task, data = tiny_data()
    ceiling = task.ceiling(data)
    test_rows = log.merge(pd.DataFrame({"user": data.test_inputs.users, "item": data.test_inputs.attributes["title_item"]}))
    t_ptr, t_codes, t_probs = artwork_sim.choice_probabilities(catalog, test_rows, TINY_CONFIG)
    rng = np.random.default_rng(0)
    draws = 200
    hits = ips = 0.0
    for e, (a, b) in enumerate(zip(t_ptr[:-1], t_ptr[1:])):
        chosen = rng.choice(b - a, size=draws, p=t_probs[a:b] / t_probs[a:b].sum())
        hit = (chosen == np.argmax(t_probs[a:b])).mean()
        hits, ips = hits + hit, ips + hit * (b - a)
    n = len(test_rows)
    assert abs(hits / n - ceiling["accuracy"].mean()) < 0.01
    assert abs(ips / n - ceiling["ips"].mean()) < 0.01 * ceiling["ips"].mean() * 3
    assert ceiling["accuracy"].mean() == pytest.approx(test_rows["p_best"].mean())


# --- the task --------------------------------------------------------------------------------


def test_splits_are_sized_and_pair_disjoint_and_the_audit_catches_overlap():
    task, data = tiny_data()
    fit = data.fit
    assert (len(fit.train_examples), len(fit.valid), len(data.test_inputs)) == (2000, 300, 800)
    pairs = [set(zip(ex.users, ex.attributes["title_item"])) for ex in (fit.train_examples, fit.valid, data.test_inputs)]
    assert not (pairs[0] & pairs[1]) and not (pairs[0] & pairs[2]) and not (pairs[1] & pairs[2])
    task.audit(data)
    leaky = dataclasses.replace(data, fit=dataclasses.replace(fit, train_examples=data.test_inputs))
    with pytest.raises(TargetLeakError, match="both the test and train"):
        task.audit(leaky)
    with pytest.raises(Exception, match="do not fit"):
        tiny_task(params={"n_train": 10_000})


def test_histories_are_the_last_interactions_strictly_before_the_engagement():
    task, data = tiny_task(params={"max_history": 7})
    inter = tiny_catalog().interactions
    ex = data.test_inputs
    for row in range(0, len(ex), 97):
        user_rows = inter[(inter["user"] == ex.users[row]) & (inter["timestamp"] < ex.as_of[row])]
        np.testing.assert_array_equal(ex.histories.items_of(row), user_rows["item"].to_numpy()[-7:])
    assert ex.histories.lengths.max() <= 7
    assert (ex.histories.timestamps < np.repeat(ex.as_of, ex.histories.lengths)).all()
    m = ex.attributes["n_options"].to_numpy()
    assert ((ex.candidates >= 0).sum(axis=1) == m).all() and ex.candidates.shape[1] == 40
    assert all(t in ex.candidates[i] for i, t in enumerate(data.test_targets.items))


def test_simulator_internals_and_logs_never_reach_methods():
    task, data = tiny_data()
    received = []

    class Spy(MostChosen):
        name = "spy"

        def fit(self, fit_data):
            received.append(fit_data.catalog)
            super().fit(fit_data)

    run_method(Spy, None, 0, task, data)
    (view,) = received
    assert set(view.tables) == {"artworks"}
    assert set(view.tables["artworks"].columns) <= set(METHOD_COLUMNS)
    assert {"facet", "appeal", "p_best", "chosen"}.isdisjoint(view.tables["artworks"].columns)
    full = tiny_catalog().tables
    leaky_view = dataclasses.replace(data.fit.catalog, tables={**full})
    with pytest.raises(TargetLeakError, match="artwork_log"):
        task.audit(dataclasses.replace(data, fit=dataclasses.replace(data.fit, catalog=leaky_view)))


def test_accuracy_by_option_report_has_known_answers(tmp_path):
    task, data = tiny_data()
    ranked = data.test_inputs.candidates  # the first option always
    report = task.report(data, ranked, {}, tmp_path / "first_option")
    rows = {r["option"]: r for r in report["accuracy_by_option"]}
    truth = tiny_catalog().tables["artworks"]["option"].to_numpy()[data.test_targets.items]
    assert rows[1]["accuracy"] == 1.0 and all(r["accuracy"] == 0.0 for k, r in rows.items() if k != 1)
    assert rows[1]["predicted_share"] == 1.0 and sum(r["count"] for r in rows.values()) == len(truth)
    assert rows[1]["count"] == int((truth == 1).sum())
    assert "plots" not in report  # drawn at leaderboard time, named after the run id
    from recbench.leaderboard_sections import option_plots

    doc = {"task": {"name": "artwork"}, "run_id": "abc123", "method": {"name": "first_option"}, "reports": report}
    other = {**doc, "run_id": "def456"}
    plot = option_plots([doc, other], tmp_path / "boards")  # one figure, a panel per run
    assert plot.name.startswith("artwork-by-option-") and plot.read_bytes()[:4] == b"\x89PNG"
    assert option_plots([doc], tmp_path / "boards") != plot  # named after its runs
    assert option_plots([{**doc, "reports": {}}], tmp_path / "boards") is None


# --- metrics through the task, on hand-written logs ------------------------------------------

RECORDS = [  # (user, title, options, engaged option, propensity, reward)
    ("u1", "t1", 2, 1, 0.5, 1), ("u2", "t1", 2, 2, 0.5, 1), ("u3", "t1", 2, 1, 0.25, 0),
    ("u1", "t2", 4, 1, 0.1, 1), ("u2", "t2", 4, 3, 0.25, 1), ("u3", "t2", 4, 1, 0.2, 0),
    ("u4", "t1", 2, 1, 0.8, 1), ("u4", "t2", 4, 4, 0.5, 0),
]


def _write_logs(path, records=RECORDS, overrides=None):
    lines = []
    for n, (user, title, m, engaged, propensity, reward) in enumerate(records):
        arts = [{"artwork_id": f"{title}-{k}", "caption": f"scene {k} of {title}"} for k in range(1, m + 1)]
        record = {"user_id": user, "title_id": title, "timestamp": 1000 + n, "artworks": arts,
                  "engaged": f"{title}-{engaged}", "propensity": propensity, "reward": reward,
                  "history": [{"title_id": "t0", "timestamp": 10, "rating": 4}]}
        lines.append(json.dumps({**record, **(overrides or {}).get(n, {})}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ips_and_snips_through_the_task_match_hand_computed_values(tmp_path):
    add_artwork_logs("hand-logs", _write_logs(tmp_path / "logs.jsonl"))
    class SnipsTask:  # the artwork spec leaves SNIPS out (1.0 on the simulator); logs with 0/1 rewards add it back
        @hookimpl
        def recbench_register_tasks(self, register):
            spec = load_registry().tasks.get("artwork")
            register(dataclasses.replace(spec, name="artwork-snips", metrics=(*spec.metrics, "snips"), ablations=()))

    pm = get_plugin_manager(extra_plugins=(FirstOptionPlugin(), SnipsTask()))
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    outcome = runner.run(RunRequest("artwork-snips", "first_option", dataset="hand-logs", quiet=True,
                                    task_settings={"n_train": 1, "n_valid": 1, "n_test": 6}))
    rows = read_examples(outcome.path.parent / outcome.document["examples_file"])
    table = {f"{u}|{t}": (engaged == 1, p, r) for u, t, _, engaged, p, r in RECORDS}
    picked = [table[row["key"]] for row in rows]
    assert all(row["predicted"][0].endswith("-1") for row in rows)
    weights = [hit / p for hit, p, _ in picked]
    metrics = outcome.document["metrics"]
    assert metrics["ips"]["value"] == pytest.approx(sum(w * r for w, (_, _, r) in zip(weights, picked)) / 6)
    assert metrics["snips"]["value"] == pytest.approx(sum(w * r for w, (_, _, r) in zip(weights, picked)) / sum(weights))
    assert metrics["accuracy"]["value"] == pytest.approx(sum(hit for hit, _, _ in picked) / 6)


@pytest.mark.parametrize(
    "broken, message",
    [
        ("bad_json", r"logs.jsonl line 2: not valid JSON"),
        ("missing", r"line 3: missing field\(s\) \['engaged'\]"),
        ("not_an_option", r"line 1: engaged artwork 't1-9' is not among the record's artworks"),
        ("zero_propensity", r"line 2: propensity must be a number in \(0, 1\], got 0"),
        ("big_propensity", r"line 2: propensity must be a number in \(0, 1\], got 1.5"),
        ("late_history", r"line 1: history entry 1 \('t0'\) is at or after"),
        ("other_artworks", r"line 2: title 't1' lists artworks .* must list the same artworks"),
    ],
)
def test_real_log_schema_errors_name_the_line_the_problem_and_the_fix(tmp_path, broken, message):
    path = tmp_path / "logs.jsonl"
    if broken == "bad_json":
        _write_logs(path)
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0], lines[1][:-5], *lines[2:]]) + "\n")
    else:
        overrides = {
            "missing": {2: {"engaged": None}}, "not_an_option": {0: {"engaged": "t1-9"}},
            "zero_propensity": {1: {"propensity": 0}}, "big_propensity": {1: {"propensity": 1.5}},
            "late_history": {0: {"history": [{"title_id": "t0", "timestamp": 5000}]}},
            "other_artworks": {1: {"artworks": [{"artwork_id": "t1-1", "caption": "another caption"},
                                                {"artwork_id": "t1-2", "caption": "scene 2 of t1"}]}},
        }[broken]
        _write_logs(path, overrides=overrides)
    with pytest.raises(DatasetError, match=message):
        load_artwork_logs(path)


def test_parquet_logs_load_like_jsonl_and_report_rows(tmp_path):
    jsonl = _write_logs(tmp_path / "logs.jsonl")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    pd.DataFrame(records).to_parquet(tmp_path / "logs.parquet")
    a, b = load_artwork_logs(jsonl), load_artwork_logs(tmp_path / "logs.parquet")
    pd.testing.assert_frame_equal(a.tables["artwork_log"], b.tables["artwork_log"])
    records[1]["propensity"] = 2.0
    pd.DataFrame(records).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=r"bad.parquet row 2: propensity"):
        load_artwork_logs(tmp_path / "bad.parquet")


# --- baselines -------------------------------------------------------------------------------


class _ArtworkKit(MethodConformance):
    kinds = ("artwork",)


class TestMostChosenConformance(_ArtworkKit):
    method = MostChosen


class TestProductionConformance(_ArtworkKit):
    method = Production
    config = FAST_PRODUCTION


def test_production_beats_random_and_stays_below_the_ceiling():
    task, data = tiny_data()
    truth, m = data.test_targets.items, data.test_inputs.attributes["n_options"].to_numpy()
    accuracy = {}
    for cls, config in ((RandomMethod, None), (MostChosen, None), (Production, FAST_PRODUCTION)):
        top = run_method(cls, config, 0, task, data, batch_size=256).items[:, 0]
        accuracy[cls.name] = ((top == truth).mean(), ((top == truth) * m).mean())
    ceiling = task.ceiling(data)["accuracy"].mean()
    assert accuracy["production"][0] > accuracy["random"][0] + 0.06
    assert accuracy["production"][1] > accuracy["random"][1] * 1.5
    assert accuracy["production"][0] < ceiling


def test_end_to_end_runs_ceiling_info_and_leaderboard(tmp_path, capsys):
    pm = get_plugin_manager()
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    request = dict(dataset="artwork-tiny", quiet=True, task_settings=SIZES)
    docs = {name: runner.run(RunRequest("artwork", name, **request)).document for name in ("random", "most_chosen")}
    docs["production"] = runner.run(RunRequest("artwork", "production", cli_settings={"caption_dim": 16, "l2_grid": "10"},
                                               **request)).document
    oracle = runner.record_ceiling(RunRequest("artwork", "oracle", **request)).document
    assert oracle["ceiling"] is True and oracle["metrics"]["ips"]["value"] > docs["production"]["metrics"]["ips"]["value"]
    rows = docs["production"]["reports"]["accuracy_by_option"]
    assert sum(r["count"] for r in rows) == SIZES["n_test"]
    board = render_leaderboard("artwork", runner.store, out_dir=tmp_path / "boards").markdown
    ranking = board[board.index("| rank"):]
    table = [line for line in ranking[: ranking.index("\n\n")].splitlines() if line.startswith("| ")]
    assert "oracle (ceiling)" in table[-1] and "| ref " in next(line for line in table if "| production " in line)
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", board)
    assert all((tmp_path / "boards" / link).resolve().is_file() for link in links)
    assert len(links) == 2 and "-by-option-" in links[1]  # the comparison on top; the runs' option plots in one figure
    assert main(["data", "info", "artwork-tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert sum(info["chosen_option_counts"].values()) == info["artwork_examples"] == len(tiny_catalog().tables["artwork_log"])
    assert info["ceiling"]["accuracy"] == pytest.approx(tiny_catalog().tables["artwork_log"]["p_best"].mean(), abs=1e-4)
    assert info["options_per_title"]["min"] >= 4 and info["options_per_title"]["max"] <= 40
