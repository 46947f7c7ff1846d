"""Classic collaborative-filtering baselines: ease, nmf, als, bpr."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recbench.config import build_config
from recbench.errors import ConfigError
from recbench.examples import CatalogView, ExampleSet, FitData, Histories, Targets
from recbench.fitting import validation_ndcg
from recbench.metrics import Outcome
from recbench.plugins.classic.als import ALS
from recbench.plugins.classic.bpr import BPR
from recbench.plugins.classic.ease import EASE, ease_weights
from recbench.plugins.classic.nmf import NMF
from recbench.plugins.classic.random_baseline import RandomMethod
from recbench.testing import MethodConformance, run_method, tiny_task

# small but real settings; two values in one field so the validation choice runs too
FAST = {
    EASE: EASE.Config(l2=(10.0, 100.0)),
    NMF: NMF.Config(n_components=(4, 8), alpha_W=(0.0,), max_iter=50),
    ALS: ALS.Config(factors=(8,), alpha=(1.0, 10.0), iterations=(5,)),
    BPR: BPR.Config(factors=(8,), learning_rate=(0.01, 0.05), max_epochs=20, patience=5, min_epochs=5),
}


class TestEase(MethodConformance):
    method = EASE
    config = FAST[EASE]


class TestNMF(MethodConformance):
    method = NMF
    config = FAST[NMF]


class TestALS(MethodConformance):
    method = ALS
    config = FAST[ALS]


class TestBPR(MethodConformance):
    method = BPR
    config = FAST[BPR]


def _top10(method_cls, config, seed: int) -> tuple[float, float]:
    task, data = tiny_task("fullrank")
    outcome = Outcome.from_ranking(run_method(method_cls, config, seed, task, data).items, data.test_targets)
    hits = outcome.hits[:, :10]
    return float(hits.any(axis=1).mean()), float((hits / np.log2(np.arange(2, 12))).sum(axis=1).mean())


@pytest.mark.parametrize("method_cls", list(FAST), ids=lambda cls: cls.name)
def test_beats_random_on_tiny_fullrank(method_cls):
    hr, ndcg = _top10(method_cls, FAST[method_cls], seed=0)
    random_runs = [_top10(RandomMethod, None, seed) for seed in range(3)]
    assert hr > max(r[0] for r in random_runs) + 0.05, (method_cls.name, hr, random_runs)
    assert ndcg > max(r[1] for r in random_runs) + 0.05, (method_cls.name, ndcg, random_runs)


@pytest.mark.parametrize("method_cls", list(FAST), ids=lambda cls: cls.name)
def test_describe_records_the_validation_choice(method_cls):
    _, data = tiny_task("fullrank")
    method = method_cls(FAST[method_cls], seed=0)
    method.fit(data.fit)
    fitted = method.describe()
    assert len(fitted["validation"]) == 2
    best = max(fitted["validation"], key=lambda row: row["ndcg@10"])
    assert fitted["chosen"] == {k: v for k, v in best.items() if k != "ndcg@10"}


@pytest.mark.parametrize("method_cls", [NMF, ALS, BPR], ids=lambda cls: cls.name)
def test_factors_reproduce_under_a_seed_and_follow_it(method_cls):
    _, data = tiny_task("fullrank")
    config = dataclasses.replace(FAST[method_cls], refit_with_validation=False)

    def factors(seed):
        method = method_cls(config, seed=seed)
        method.fit(data.fit)
        if method_cls is BPR:
            return method._factors.items
        model = method._model
        return model.components_ if method_cls is NMF else model.item_factors

    np.testing.assert_array_equal(factors(5), factors(5))
    if method_cls is not NMF:  # NMF's nndsvda start is deterministic; the seed only breaks SVD ties
        assert not np.array_equal(factors(5), factors(6))


def test_ease_weights_match_hand_computed_ridge_regressions():
    # items 0, 1 over three users: Gram [[3, 2], [2, 2]]; each weight is a one-variable ridge fit
    x = np.array([[1, 1], [1, 0], [1, 1]], dtype=np.float64)
    np.testing.assert_allclose(ease_weights(x.T @ x, 1.0), [[0.0, 2 / 4], [2 / 3, 0.0]], rtol=1e-6)
    # three items: column j of B is the ridge regression of item j on the other items
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
    weights = ease_weights(x.T @ x, 0.5)
    for j in range(3):
        others = [i for i in range(3) if i != j]
        ridge = np.linalg.solve(x[:, others].T @ x[:, others] + 0.5 * np.eye(2), x[:, others].T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], ridge, rtol=1e-5)
        assert weights[j, j] == 0.0


def _fit_data(histories: list[list[int]], n_items: int) -> FitData:
    """Training interactions = the given per-user item lists; a single-value config needs no validation."""
    rows = [(u, i, t) for u, items in enumerate(histories) for t, i in enumerate(items)]
    train = pd.DataFrame(rows, columns=["user", "item", "timestamp"]).assign(rating=np.float32(np.nan))
    catalog = CatalogView(
        "hand", pd.DataFrame({"item_id": np.arange(n_items)}), pd.DataFrame({"user_id": np.arange(len(histories))})
    )
    valid = ExampleSet(np.zeros(0, str), np.zeros(0, np.int32), Histories.from_lists([]), np.zeros(0, np.int64))
    return FitData(catalog, train, valid, Targets.from_lists([]))


def _examples(users: list[int], histories: list[list[int]]) -> ExampleSet:
    return ExampleSet(
        np.array([f"u{u}" for u in users]), np.array(users, np.int32), Histories.from_lists(histories),
        np.zeros(len(users), np.int64),
    )


def test_ease_scores_the_example_history_with_the_formula():
    histories = [[0, 1], [1, 2], [0, 2], [0, 1, 2]]
    method = EASE(EASE.Config(l2=(0.5,)), seed=0)
    method.fit(_fit_data(histories, 3))
    x = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float64)
    precision = np.linalg.inv(x.T @ x + 0.5 * np.eye(3))
    weights = np.eye(3) - precision / np.diag(precision)
    # user 0 asks with a history unlike their training row: the history, not the user, is scored
    np.testing.assert_allclose(method.score(_examples([0], [[2]])), weights[[2]], rtol=1e-5)


@pytest.mark.parametrize("method_cls", [EASE, NMF, ALS], ids=lambda cls: cls.name)
def test_fold_in_methods_score_the_history_they_are_given(method_cls):
    _, data = tiny_task("fullrank")
    method = method_cls(FAST[method_cls], seed=0)
    method.fit(data.fit)
    user = int(data.test_inputs.users[0])
    scores = method.score(_examples([user, user], [[0, 1, 2], [10, 11, 12]]))
    assert not np.allclose(scores[0], scores[1])


def test_bpr_scores_users_by_fitted_factors_and_cold_users_by_item_bias():
    histories = [[0, 1], [1, 2], [0, 2], []]
    method = BPR(BPR.Config(factors=(4,), learning_rate=(0.01,), max_epochs=10), seed=0)
    method.fit(_fit_data(histories, 3))
    scores = method.score(_examples([0, 0, 3], [[0, 1], [2], [0]]))
    np.testing.assert_array_equal(scores[0], scores[1])  # user codes, not histories, pick the factors
    assert np.ptp(scores[2]) > 0  # the item bias was trained
    np.testing.assert_allclose(scores[2], method._factors.item_bias)  # a zero user vector: bias only


def test_bpr_keeps_the_best_validation_epoch_and_refits_for_that_many(monkeypatch):
    import recbench.plugins.classic.bpr as bpr_module

    _, data = tiny_task("fullrank")
    epochs_drawn = []
    sample = bpr_module.sample_triples
    monkeypatch.setattr(bpr_module, "sample_triples", lambda *a: (epochs_drawn.append(1), sample(*a))[1])
    config = BPR.Config(
        factors=(8,), learning_rate=(0.1,), max_epochs=40, patience=3, min_epochs=0, refit_with_validation=False
    )
    method = BPR(config, seed=0)
    method.fit(data.fit)
    run = method._runs[0]
    best = int(np.argmax(run.curve)) + 1  # the first epoch reaching the best score
    assert run.epochs_run == best + 3 < 40, run.curve  # stopped by patience, not by max_epochs
    assert method.chosen["epochs"] == run.best_epoch == best
    # the kept factors are the best epoch's, not the last epoch's
    assert validation_ndcg(method.score, data.fit.valid, data.fit.valid_targets) == max(run.curve) > run.curve[-1]
    assert len(epochs_drawn) == run.epochs_run

    epochs_drawn.clear()
    BPR(dataclasses.replace(config, refit_with_validation=True), seed=0).fit(data.fit)
    assert len(epochs_drawn) == run.epochs_run + best  # the refit runs exactly the chosen epochs

    later = BPR(dataclasses.replace(config, min_epochs=best + 10), seed=0)
    later.fit(data.fit)
    assert later._runs[0].epochs_run == max(best + 10, later._runs[0].best_epoch + 3)  # no stop before min_epochs


@pytest.mark.parametrize(
    ("method_cls", "settings", "needle"),
    [
        (EASE, {"l2": "0"}, "l2"),
        (NMF, {"l1_ratio": "1.5"}, "l1_ratio"),
        (ALS, {"alpha": ""}, "alpha"),
        (BPR, {"learning_rate": "-0.1"}, "learning_rate"),
    ],
)
def test_configs_reject_bad_values_by_name(method_cls, settings, needle):
    with pytest.raises(ConfigError, match=needle):
        build_config(method_cls.Config, settings, owner=method_cls.name)


def test_a_grid_without_validation_examples_is_refused():
    with pytest.raises(ConfigError, match="validation"):
        ALS(FAST[ALS]).fit(_fit_data([[0, 1], [1, 2]], 3))


def test_nmf_caps_components_at_the_catalog_size():
    method = NMF(NMF.Config(n_components=(2, 64), alpha_W=(0.0,), max_iter=20, refit_with_validation=False))
    _, data = tiny_task("fullrank")
    method.fit(data.fit)
    assert [row["n_components"] for row in method.describe()["validation"]] == [2, 50]  # tiny: 60 users, 50 items
    method = NMF(NMF.Config(n_components=(8,), alpha_W=(0.0,), max_iter=20))
    method.fit(_fit_data([[0, 1], [1, 2]], 3))
    assert method.describe()["chosen"]["n_components"] == 2
