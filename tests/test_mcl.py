"""mcl: the mixed-centric loss against hand-computed values, the conformance kit, learning on synthetic data."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recbench.contracts import FullCatalogContract
from recbench.errors import ConfigError
from recbench.metrics import Outcome
from recbench.plugins.classic.mcl import MCL, MCLConfig, mcl_loss
from recbench.plugins.datasets.synthetic import make_synthetic
from recbench.task import TaskSpec
from recbench.tasks.fullrank import FullRankTask
from recbench.testing import MethodConformance

PLAIN = MCLConfig(margin=1.0, alpha=1.0, beta=1.0, lamb_p=0.0, lamb_n=0.0, user_batch=1)


def _loss(users, positives, negatives, group, config=PLAIN):
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float32)  # noqa: E731
    return float(mcl_loss(torch, as_tensor(users), as_tensor(positives), as_tensor(negatives),
                          torch.tensor(group), max(group) + 1, config))


# 1-d embeddings. User 0: positive at distance 1, negatives at 0.25 and 9 (9 is past margin + max positive
# distance = 2: dropped). User 1: positive at 4, negatives at 1 and 0 (both within 5: kept).
USERS, POSITIVES = [[0.0], [0.0]], [[1.0], [2.0]]
NEGATIVES, GROUP = [[[0.5], [3.0]], [[1.0], [0.0]]], [0, 1]
BY_HAND = math.log(1 + math.exp(-0.25) + math.exp(-1.0) + math.exp(0.0)) + math.log(1 + math.exp(1.0) + math.exp(4.0))


def test_loss_by_hand_with_mined_negatives():
    assert _loss(USERS, POSITIVES, NEGATIVES, GROUP) == pytest.approx(BY_HAND, rel=1e-6)


def test_batch_size_divides_the_sums_and_temperatures_scale_them():
    config = replace(PLAIN, user_batch=4, alpha=2.0, beta=0.5, lamb_p=0.5, lamb_n=-0.5)
    neg = sum(math.exp(-0.5 * (d - 0.5)) for d in (0.25, 1.0, 0.0))
    pos = sum(math.exp(2.0 * (d + 0.5)) for d in (1.0, 4.0))
    expected = math.log(1 + neg / 4) / 0.5 + math.log(1 + pos / 4) / 2.0
    assert _loss(USERS, POSITIVES, NEGATIVES, GROUP, config) == pytest.approx(expected, rel=1e-6)


def test_a_user_whose_pairs_are_all_easy_adds_nothing():
    # user 2: positives at distances 0.01 and 9, every negative at 25 or more: the positives are within
    # min negative distance - margin (easy) and every negative beyond margin + max positive distance (easy)
    users = USERS + [[0.0], [0.0]]
    positives = POSITIVES + [[0.1], [3.0]]
    negatives = NEGATIVES + [[[5.0], [6.0]], [[6.0], [7.0]]]
    assert _loss(users, positives, negatives, GROUP + [2, 2]) == pytest.approx(BY_HAND, rel=1e-6)


def test_gradients_pull_positives_in_and_push_negatives_out():
    user = torch.zeros(1, 1, requires_grad=True)
    positive = torch.tensor([[1.0]], requires_grad=True)
    negative = torch.tensor([[[0.5]]], requires_grad=True)
    mcl_loss(torch, user, positive, negative, torch.tensor([0]), 1, PLAIN).backward()
    assert positive.grad.item() > 0  # descending the gradient moves the positive toward the user at 0
    assert negative.grad.item() < 0  # and the negative away from it


def test_config_checks():
    with pytest.raises(ConfigError, match="user_batch must be at least 1"):
        MCLConfig(user_batch=0)
    with pytest.raises(ConfigError, match="beta must be positive"):
        MCLConfig(beta=0.0)


FAST = MCLConfig(factors=8, max_epochs=2, eval_every=1, user_batch=64, device="cpu")


class TestMCLConformance(MethodConformance):
    method = MCL
    config = replace(FAST, refit_with_validation=True)


def test_learns_on_synthetic_data():
    spec = TaskSpec(name="syn-fullrank", version=1, kind="fullrank", dataset="synthetic", description="mcl test",
                    metrics=("hr@10",), primary_metric="hr@10", params={"k": 10})
    data = FullRankTask(spec).build(make_synthetic(n_users=300, n_items=200, n_interactions=9000, seed=3))
    method = MCL(replace(FAST, factors=16, max_epochs=40, eval_every=5, patience=8, lr=5e-3), seed=0)
    method.fit(data.fit)
    ranked = method.predict(data.test_inputs, FullCatalogContract(k=10, exclude_seen=True)).items
    hr = float(Outcome.from_ranking(ranked, data.test_targets).hits.any(axis=1).mean())
    inputs = data.test_inputs
    unseen = 200 - np.array([len(np.unique(inputs.histories.items_of(row))) for row in range(len(inputs))])
    assert hr > 3 * float(np.mean(np.minimum(1.0, 10 / unseen))), (hr, method.describe())
