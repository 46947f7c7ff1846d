"""CURec's reason-aware recommender (the CURec paper's section 4.3.2): the reward model that is also the recommender.

For a user u with item history S_u and interest pattern p_u, and an item i with reason list Q_i:

- ``e_u``: the state at the last history item of a causal transformer over item ids
  (:class:`recbench.sequential.SequenceEncoder`, SASRec's encoder; equation 9);
- ``e_i``: the item's id embedding (the encoder's item table, tied as in SASRec);
- ``s_ui``: the match of pattern and reasons (equation 8). ``fusion="attention"``: multi-head
  attention with the pattern as query over the item's reasons as keys and values. The key list
  always starts with a learned "no reason" slot, so an item without reasons attends to that slot
  (never to an empty list) and any item can say "none of these". The paper's ablations (Table 3)
  fuse the reason list alone (``ap``: mean; ``mlp``: mean of an MLP of each reason; ``sa``: one
  self-attention layer, then the mean) and project it, concatenated with the pattern, to ``s_ui``;
- the score ``y_ui = DIN([e_u, e_i, s_ui])``: an MLP (PReLU, as DIN) over the three vectors and
  ``e_u * e_i`` (DIN's product feature), trained with the full-softmax NLL over the catalog
  (equation 11).

Pattern and reason texts arrive as sentence-embedding vectors (:class:`ReasonBank`), projected to
the model's size. A user without a pattern gets a learned "no pattern" query (counted by the caller).
Torch is imported at the top: the plugin imports this module inside ``fit``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from recbench.data.catalog import sort_interactions
from recbench.examples import ExampleSet, FitData
from recbench.fitting import validation_ndcg
from recbench.sequential import SequenceBatches, SequenceEncoder, history_batches

FUSIONS = ("attention", "ap", "mlp", "sa")


@dataclass(frozen=True)
class ReasonModelConfig:
    """The recommender's sizes and training; ``max_len``/``hidden``/``blocks``/``heads`` are the encoder's."""

    fusion: str = "attention"
    hidden: int = 64
    heads: int = 2
    blocks: int = 2
    max_len: int = 50
    dropout: float = 0.2
    max_reasons: int = 8  # an item keeps its most recent reasons
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 20
    positions_per_user: int = 8  # training positions drawn per sequence and epoch (each a full-softmax NLL)
    eval_every: int = 2
    patience: int = 3
    valid_examples: int | None = None  # validation users per check (None: all)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")


@dataclass
class ReasonBank:
    """Text-embedding vectors: one pattern per user (or none), a growing reason list per item."""

    dim: int
    n_users: int
    n_items: int
    patterns: np.ndarray = field(init=False)
    has_pattern: np.ndarray = field(init=False)
    reasons: list[list[np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.patterns = np.zeros((self.n_users, self.dim), np.float32)
        self.has_pattern = np.zeros(self.n_users, bool)
        self.reasons = [[] for _ in range(self.n_items)]

    def set_pattern(self, user: int, vector: np.ndarray) -> None:
        self.patterns[user], self.has_pattern[user] = vector, True

    def add_reason(self, item: int, vector: np.ndarray) -> None:
        self.reasons[item].append(np.asarray(vector, np.float32))

    def reason_tensor(self, max_reasons: int, items: np.ndarray | None = None,
                      extra: dict[int, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(len(items), max_reasons, dim)`` latest reasons of ``items`` (all by default) and their mask;
        ``extra[row]`` is appended to row ``row``'s list first (a candidate reason under evaluation)."""
        items = np.arange(self.n_items) if items is None else np.asarray(items)
        vectors = np.zeros((len(items), max_reasons, self.dim), np.float32)
        mask = np.zeros((len(items), max_reasons), bool)
        for row, item in enumerate(items):
            kept = self.reasons[int(item)] + ([extra[row]] if extra and row in extra else [])
            kept = kept[-max_reasons:]
            if kept:
                vectors[row, : len(kept)] = np.stack(kept)
                mask[row, : len(kept)] = True
        return torch.from_numpy(vectors), torch.from_numpy(mask)


class ReasonRecommender(nn.Module):
    """See the module docstring."""

    def __init__(self, n_items: int, text_dim: int, config: ReasonModelConfig) -> None:
        super().__init__()
        d, self.config, self.heads = config.hidden, config, config.heads
        self.encoder = SequenceEncoder(n_items, config, config.dropout, causal=True, ffn_factor=1)
        self.pattern_in, self.reason_in = nn.Linear(text_dim, d), nn.Linear(text_dim, d)
        self.no_reason = nn.Parameter(torch.randn(d) * 0.02)
        self.no_pattern = nn.Parameter(torch.randn(d) * 0.02)
        if config.fusion == "attention":
            self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        else:
            self.combine = nn.Linear(2 * d, d)
            if config.fusion == "mlp":
                self.reason_mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
            if config.fusion == "sa":
                self.self_attention = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.din = nn.Sequential(nn.Linear(4 * d, d), nn.PReLU(), nn.Linear(d, d // 2), nn.PReLU(), nn.Linear(d // 2, 1))

    @property
    def n_items(self) -> int:
        return self.encoder.n_items

    def queries(self, patterns: torch.Tensor, has_pattern: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` pattern vectors; the learned "no pattern" vector where a user has none."""
        projected = self.pattern_in(patterns)
        return torch.where(has_pattern[:, None], projected, self.no_pattern.expand_as(projected))

    def keys(self, reasons: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected reasons with the "no reason" slot first: ``(M, 1 + L, d)`` and its ``(M, 1 + L)`` mask."""
        projected = self.reason_in(reasons)
        slot = self.no_reason.expand(len(reasons), 1, -1)
        return torch.cat([slot, projected], dim=1), torch.cat([mask.new_ones(len(mask), 1), mask], dim=1)

    def match(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``s_ui`` for every pair of ``B`` queries and ``M`` key lists: ``(B, M, d)``."""
        b, (m, length, d), h = len(queries), keys.shape, self.heads
        if self.config.fusion == "attention":
            q = self.query(queries).view(b, h, d // h)
            k, v = self.key(keys).view(m, length, h, d // h), self.value(keys).view(m, length, h, d // h)
            logits = torch.einsum("bhe,mlhe->bhml", q, k) / math.sqrt(d // h)
            weights = logits.masked_fill(~mask[None, None], float("-inf")).softmax(dim=-1)
            return self.out(torch.einsum("bhml,mlhe->bmhe", weights, v).reshape(b, m, d))
        if self.config.fusion == "mlp":
            keys = self.reason_mlp(keys)
        elif self.config.fusion == "sa":
            keys, _ = self.self_attention(keys, keys, keys, key_padding_mask=~mask, need_weights=False)
        fused = (keys * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
        w_query, w_item = self.combine.weight[:, :d], self.combine.weight[:, d:]
        return (queries @ w_query.T)[:, None] + (fused @ w_item.T + self.combine.bias)[None]

    def din_scores(self, users: torch.Tensor, items: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
        """``DIN([e_u, e_i, s_ui, e_u * e_i])`` of ``(B, d)`` users, ``(M, d)`` items and ``(B, M, d)`` matches."""
        d = users.shape[1]
        first = self.din[0]
        w = [first.weight[:, j * d: (j + 1) * d] for j in range(4)]
        hidden = ((users @ w[0].T)[:, None] + (items @ w[1].T)[None] + matches @ w[2].T
                  + torch.einsum("bd,md,hd->bmh", users, items, w[3]) + first.bias)
        return self.din[1:](hidden).squeeze(-1)

    def catalog_logits(self, states: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
        """``(B, n_items)`` scores of every item for ``B`` user states and pattern queries."""
        items = self.encoder.items.weight[1: self.n_items + 1]
        return self.din_scores(states, items, self.match(queries, keys, mask))

    def pair_scores(self, states: torch.Tensor, queries: torch.Tensor, items: torch.Tensor, keys: torch.Tensor,
                    mask: torch.Tensor) -> torch.Tensor:
        """``(P,)`` scores of P (user state, pattern, item, that item's key list) rows."""
        out = []
        for row in range(len(states)):
            matches = self.match(queries[row: row + 1], keys[row: row + 1], mask[row: row + 1])
            item = self.encoder.items.weight[items[row] + 1][None]
            out.append(self.din_scores(states[row: row + 1], item, matches)[0, 0])
        return torch.stack(out)


def user_sequences(train: pd.DataFrame, length: int) -> tuple[SequenceBatches, np.ndarray]:
    """Each user's last ``length`` training items (users with two or more) and the user code of each sequence."""
    frame = sort_interactions(train)
    users, starts, counts = np.unique(frame["user"].to_numpy(), return_index=True, return_counts=True)
    keep = counts >= 2
    stops, lengths = starts[keep] + counts[keep], np.minimum(counts[keep], length)
    return SequenceBatches.of(frame["item"].to_numpy(np.int64) + 1, stops, lengths), users[keep]


class TrainedReasonModel:
    """The model with the bank it reads; scores the catalog for examples and single (user, item, reason) pairs."""

    def __init__(self, model: ReasonRecommender, bank: ReasonBank) -> None:
        self.model, self.bank = model, bank
        self.curve: list[tuple[int, float]] = []
        self.losses: list[float] = []
        self.best_epoch, self.best_ndcg, self.seconds = 0, -1.0, 0.0

    def _queries(self, users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, np.int64)
        return self.model.queries(torch.from_numpy(self.bank.patterns[users]), torch.from_numpy(self.bank.has_pattern[users]))

    def _states(self, histories: Any) -> tuple[torch.Tensor, np.ndarray]:
        sequences = history_batches(histories, self.model.config.max_len)
        return self.model.encoder.last_states(torch.from_numpy(sequences.batch(np.arange(len(sequences))))), sequences.lengths

    def score(self, examples: ExampleSet, batch: int = 64) -> np.ndarray:
        """``(len(examples), n_items)`` scores (history items not excluded: the caller does that)."""
        self.model.eval()
        out = np.empty((len(examples), self.model.n_items), np.float32)
        with torch.inference_mode():
            keys, mask = self.model.keys(*self.bank.reason_tensor(self.model.config.max_reasons))
            for start in range(0, len(examples), batch):
                part = examples.take(np.arange(start, min(start + batch, len(examples))))
                states, _ = self._states(part.histories)
                out[start: start + len(part)] = self.model.catalog_logits(states, self._queries(part.users), keys, mask).numpy()
        return out

    def reward(self, histories: Any, users: np.ndarray, items: np.ndarray, reasons: np.ndarray) -> np.ndarray:
        """Equation 12: the score of (u, i) with ``reasons[r]`` appended to item ``items[r]``'s list."""
        self.model.eval()
        with torch.inference_mode():
            states, _ = self._states(histories)
            vectors, mask = self.bank.reason_tensor(self.model.config.max_reasons, items, dict(enumerate(reasons)))
            keys, mask = self.model.keys(vectors, mask)
            scores = self.model.pair_scores(states, self._queries(users), torch.as_tensor(items, dtype=torch.long), keys, mask)
        return scores.numpy().astype(np.float64)


def nll_loss(model: ReasonRecommender, bank: ReasonBank, tokens: torch.Tensor, users: np.ndarray,
             rng: np.random.Generator, positions: int) -> torch.Tensor:
    """Equation 11 at up to ``positions`` random positions of each right-padded sequence of ``tokens``."""
    targets = tokens[:, 1:]
    used = (targets != 0).numpy()
    inputs = tokens[:, :-1].masked_fill(~torch.from_numpy(used), 0)
    states = model.encoder(inputs)
    rows, cols = [], []
    for r in range(len(tokens)):
        valid = np.flatnonzero(used[r])
        chosen = rng.choice(valid, size=min(positions, len(valid)), replace=False) if len(valid) else valid
        rows.extend([r] * len(chosen))
        cols.extend(chosen.tolist())
    rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
    queries = model.queries(torch.from_numpy(bank.patterns[users[rows]]), torch.from_numpy(bank.has_pattern[users[rows]]))
    keys, mask = model.keys(*bank.reason_tensor(model.config.max_reasons))
    logits = model.catalog_logits(states[rows_t, cols_t], queries, keys, mask)
    return nn.functional.cross_entropy(logits, targets[rows_t, cols_t] - 1)


def train_reason_model(data: FitData, bank: ReasonBank, config: ReasonModelConfig, seed: int) -> TrainedReasonModel:
    """Adam on equation 11 over the users' training sequences; the epoch with the best validation NDCG@10 kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trained = TrainedReasonModel(ReasonRecommender(data.catalog.n_items, bank.dim, config), bank)
        model = trained.model
        sequences, seq_users = user_sequences(data.train, config.max_len + 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        rng = np.random.default_rng(seed)
        best, stale, start = copy.deepcopy(model.state_dict()), 0, time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            model.train()
            for rows in sequences.epoch_batches(config.batch_size, rng):
                loss = nll_loss(model, bank, torch.from_numpy(sequences.batch(rows)), seq_users[rows], rng,
                                config.positions_per_user)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                trained.losses.append(float(loss.detach()))
            if epoch % config.eval_every and epoch != config.epochs:
                continue
            ndcg = validation_ndcg(trained.score, data.valid, data.valid_targets, max_examples=config.valid_examples)
            trained.curve.append((epoch, ndcg))
            if ndcg > trained.best_ndcg:
                trained.best_epoch, trained.best_ndcg, stale = epoch, ndcg, 0
                best = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best)
        model.eval()
        trained.seconds = time.perf_counter() - start
    return trained
