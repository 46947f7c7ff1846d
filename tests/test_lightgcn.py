"""lightgcn: the conformance kit, learning on synthetic data, seeded reproducibility, the normalized graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recbench.config import build_config
from recbench.contracts import FullCatalogContract
from recbench.errors import ConfigError
from recbench.fitting import validation_ndcg
from recbench.metrics import Outcome
from recbench.graph import normalized_adjacency
from recbench.plugins.classic.lightgcn import LightGCN, LightGCNConfig
from recbench.plugins.datasets.synthetic import make_synthetic
from recbench.task import TaskSpec
from recbench.tasks.fullrank import FullRankTask
from recbench.testing import MethodConformance

FAST = LightGCNConfig(factors=8, max_epochs=2, l2=(1e-4,), device="cpu")
LEARNING = LightGCNConfig(factors=16, max_epochs=15, patience=15, l2=(1e-4,), device="cpu")


class TestLightGCNConformance(MethodConformance):
    method = LightGCN
    config = replace(FAST, l2=(1e-4, 1e-2), refit_with_validation=True)  # every code path, still fast


@pytest.fixture(scope="module")
def synthetic_fullrank():
    """Leave-one-out on 300 users x 200 items, 30 interactions each: random HR@10 is about 0.06."""
    spec = TaskSpec(
        name="syn-fullrank", version=1, kind="fullrank", dataset="synthetic", description="lightgcn test",
        metrics=("hr@10",), primary_metric="hr@10", params={"k": 10},
    )
    return FullRankTask(spec).build(make_synthetic(n_users=300, n_items=200, n_interactions=9000, seed=3))


def _hr_at_10(method: LightGCN, data) -> float:
    ranked = method.predict(data.test_inputs, FullCatalogContract(k=10, exclude_seen=True)).items
    return float(Outcome.from_ranking(ranked, data.test_targets).hits.any(axis=1).mean())


def test_normalized_adjacency_by_hand():
    # edges u0-i0, u0-i1, u1-i1 (given twice: one edge); degrees u0=2, u1=1, i0=1, i1=2
    got = normalized_adjacency(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2, 2).toarray()
    half, edge_2_1 = 0.5, 1 / np.sqrt(2)  # 1/sqrt(2*2) and 1/sqrt(2*1)
    expected = np.array([
        [0, 0, edge_2_1, half],  # u0
        [0, 0, 0, edge_2_1],  # u1
        [edge_2_1, 0, 0, 0],  # i0
        [half, edge_2_1, 0, 0],  # i1
    ])  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.fixture(scope="module")
def learned(synthetic_fullrank):
    method = LightGCN(LEARNING, seed=0)
    method.fit(synthetic_fullrank.fit)
    return method


def test_beats_random_after_a_few_epochs(synthetic_fullrank, learned):
    inputs = synthetic_fullrank.test_inputs
    # a uniform ranking of the unseen items hits with probability 10 / (number of unseen items)
    unseen = 200 - np.array([len(np.unique(inputs.histories.items_of(row))) for row in range(len(inputs))])
    random_hr = float(np.mean(np.minimum(1.0, 10 / unseen)))
    assert _hr_at_10(learned, synthetic_fullrank) > 4 * random_hr  # an untrained model scores about 1.2x


def test_keeps_the_best_weights_and_reports_them(synthetic_fullrank, learned):
    fit, fitted = synthetic_fullrank.fit, learned.describe()
    assert fitted["best_epoch"] < fitted["validation"][0]["epochs_run"]  # validation peaked before the last epoch
    rescored = validation_ndcg(learned.score, fit.valid, fit.valid_targets)
    assert rescored == pytest.approx(fitted["validation_ndcg@10"], abs=1e-6)


def test_same_seed_same_scores_other_seed_other_scores(synthetic_fullrank):
    data = synthetic_fullrank
    config = replace(FAST, max_epochs=3, refit_with_validation=True)
    scores = []
    for seed in (5, 5, 6):
        method = LightGCN(config, seed=seed)
        method.fit(data.fit)
        scores.append(method.score(data.test_inputs))
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.allclose(scores[0], scores[2])


def test_user_without_training_interactions_is_scored_from_their_history(synthetic_fullrank):
    fit = synthetic_fullrank.fit
    user = int(fit.valid.users[0])
    cold_fit = replace(fit, train=fit.train[fit.train["user"] != user].reset_index(drop=True))
    method = LightGCN(FAST, seed=0)
    method.fit(cold_fit)
    example = fit.valid.take(np.array([0]))
    items = method._embeddings.items
    expected = items[example.histories.items].mean(axis=0) @ items.T
    np.testing.assert_allclose(method.score(example)[0], expected, rtol=1e-5)


def test_invalid_settings_name_the_field():
    with pytest.raises(ConfigError, match="layers must be at least 0"):
        build_config(LightGCNConfig, {"layers": "-1"}, owner="lightgcn")
    with pytest.raises(ConfigError, match="l2 needs at least one value"):
        build_config(LightGCNConfig, {"l2": ""}, owner="lightgcn")


def test_without_validation_examples_one_l2_trains_max_epochs_and_a_grid_is_refused(synthetic_fullrank):
    fit = synthetic_fullrank.fit
    none = np.zeros(0, np.int64)
    blind = replace(fit, valid=fit.valid.take(none), valid_targets=fit.valid_targets.take(none))
    method = LightGCN(FAST, seed=0)
    method.fit(blind)
    assert method.describe()["best_epoch"] == FAST.max_epochs and method.describe()["validation_ndcg@10"] is None
    with pytest.raises(ConfigError, match="needs validation examples.*--set l2="):
        LightGCN(replace(FAST, l2=(1e-4, 1e-3)), seed=0).fit(blind)
