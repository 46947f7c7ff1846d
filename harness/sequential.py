"""Shared PyTorch pieces of the transformer sequential recommenders (``sasrec``, ``bert4rec``).

Each user's training interactions, in the catalog's order (:func:`recbench.data.catalog.sort_interactions`),
become one sequence: its last ``max_len`` items (SASRec keeps one more, the last input's next item). Item code
``i`` is token ``i + 1``; token 0 is padding and token ``n_items + 1`` BERT4Rec's ``[MASK]``.
A batch pads its sequences to its longest one, on the right, and a position's embedding is its
distance from the sequence's last item: the same model as SASRec's left padding to ``max_len``, but
the causal mask alone then hides padding and no per-batch attention mask is built.

:class:`SequenceEncoder` is a stack of pre-LayerNorm transformer blocks over item plus learned
position embeddings, causal (SASRec) or bidirectional (BERT4Rec). The item embedding matrix is
tied as the output layer, so the hidden state at a position scores the whole catalog at once.

:func:`train_encoder` runs Adam epochs over shuffled sequence batches, checks
:func:`recbench.fitting.validation_ndcg` every ``eval_every`` epochs, stops after ``patience``
checks without a gain and keeps the best weights. Seeds are local: weights, dropout, batching,
negatives and masks come from ``seed`` alone, inside :func:`torch.random.fork_rng`, so the same
seed reproduces exactly on CPU and the caller's global RNG state is left as it was.

This module imports torch at the top; plugins import it inside ``fit`` so listing methods stays light.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from recbench.data.catalog import sort_interactions
from recbench.devices import resolve_device
from recbench.errors import ConfigError
from recbench.examples import ExampleSet, FitData, Histories
from recbench.fitting import validation_ndcg

LOG = logging.getLogger(__name__)
PAD = 0
SCORE_BATCH = 256  # sequences per forward pass at prediction time: bounds memory at 256 x n_items
LOSS_CHUNK = 2048  # positions whose catalog logits exist at once in the full-softmax loss
BUCKET_BATCHES = 4  # batches drawn together and sorted by length: far less padding, still random batches


class EncoderConfig(Protocol):
    """The options :func:`train_encoder` reads (the plugins' configs have these fields)."""

    max_len: int
    hidden: int
    blocks: int
    heads: int
    lr: float
    batch_size: int
    max_epochs: int
    patience: int
    eval_every: int
    device: str


@dataclass(frozen=True)
class SequenceBatches:
    """Users' token sequences (oldest first) in CSR layout; :meth:`batch` pads a subset on the right."""

    tokens: np.ndarray
    indptr: np.ndarray

    @classmethod
    def from_train(cls, train: pd.DataFrame, length: int) -> SequenceBatches:
        """Each user's last ``length`` training items; users with fewer than two are left out
        (they give no input and next item to learn from)."""
        frame = sort_interactions(train)  # the catalog's tie rule, as the test histories use
        _, starts, counts = np.unique(frame["user"].to_numpy(), return_index=True, return_counts=True)
        keep = counts >= 2
        return cls.of(frame["item"].to_numpy(np.int64) + 1, starts[keep] + counts[keep], np.minimum(counts[keep], length))

    @classmethod
    def of(cls, flat: np.ndarray, stops: np.ndarray, lengths: np.ndarray) -> SequenceBatches:
        """The runs ``flat[stops[r] - lengths[r] : stops[r]]``."""
        indptr = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(stops - lengths - indptr[:-1], lengths) + np.arange(indptr[-1])
        return cls(flat[positions], indptr)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def batch(self, rows: np.ndarray, width: int | None = None) -> np.ndarray:
        """``(len(rows), width)`` tokens, each row's sequence first and ``PAD`` after (default width: the longest)."""
        lengths = self.lengths[rows]
        width = max(int(lengths.max(initial=0)), 1) if width is None else width
        out = np.full((len(rows), width), PAD, dtype=np.int64)
        row_of = np.repeat(np.arange(len(rows)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row_of, offsets] = self.tokens[np.repeat(self.indptr[rows], lengths) + offsets]
        return out

    def epoch_batches(self, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
        """Row indices of one epoch's batches: shuffled, then sorted by length within groups of
        ``BUCKET_BATCHES`` batches so that each batch is padded little, in shuffled order."""
        order = rng.permutation(len(self))
        batches = []
        for first in range(0, len(order), batch_size * BUCKET_BATCHES):
            group = order[first : first + batch_size * BUCKET_BATCHES]
            group = group[np.argsort(self.lengths[group], kind="stable")]
            batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
        return [batches[i] for i in rng.permutation(len(batches))]


def history_batches(histories: Histories, length: int) -> SequenceBatches:
    """The last ``length`` items of each history, as tokens."""
    return SequenceBatches.of(histories.items.astype(np.int64) + 1, histories.indptr[1:], np.minimum(histories.lengths, length))


class Block(nn.Module):
    """A pre-LayerNorm transformer block. Dropout acts on the residual branches, not on attention
    weights: on CPU, attention-weight dropout costs more than the rest of a training step."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm, self.ffn_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv, self.out = nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, states: torch.Tensor, visible_keys: torch.Tensor | None) -> torch.Tensor:
        """``visible_keys``: ``(batch, 1, 1, length)`` bool for bidirectional attention; None means causal."""
        batch, length, hidden = states.shape
        q, k, v = self.qkv(self.attention_norm(states)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        mixed = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=visible_keys, is_causal=visible_keys is None)
        states = states + self.dropout(self.out(mixed.transpose(1, 2).reshape(batch, length, hidden)))
        return states + self.dropout(self.ffn(self.ffn_norm(states)))


class SequenceEncoder(nn.Module):
    """Item + learned position embeddings through transformer blocks; the item embeddings are the output layer."""

    def __init__(self, n_items: int, config: EncoderConfig, dropout: float, *, causal: bool, ffn_factor: int) -> None:
        super().__init__()
        self.n_items, self.causal = n_items, causal
        self.scale = math.sqrt(config.hidden)
        self.items = nn.Embedding(n_items + 2, config.hidden, padding_idx=PAD)  # + padding and [MASK]
        self.positions = nn.Embedding(config.max_len, config.hidden)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(config.hidden, config.heads, ffn_factor * config.hidden, dropout) for _ in range(config.blocks)
        )
        self.norm = nn.LayerNorm(config.hidden)
        for param in self.parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param)  # the SASRec reference implementation's init
        with torch.no_grad():
            self.items.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(batch, length, hidden)`` states of ``(batch, length)`` right-padded tokens."""
        present = tokens != PAD
        lengths = present.sum(dim=1, keepdim=True)
        distance = (lengths - 1 - torch.arange(tokens.shape[1], device=tokens.device)).clamp(min=0)
        states = self.dropout(self.items(tokens) * self.scale + self.positions(distance))
        visible_keys = None if self.causal else present[:, None, None, :]
        for block in self.blocks:
            states = block(states, visible_keys)
        return self.norm(states)

    def last_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(batch, hidden)`` state at each row's last token."""
        last = ((tokens != PAD).sum(dim=1) - 1).clamp(min=0)
        return self(tokens)[torch.arange(len(tokens), device=tokens.device), last]

    def catalog_logits(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every catalog item (tokens ``1..n_items``) from hidden ``states``."""
        return states @ self.items.weight[1 : self.n_items + 1].T


class CatalogCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy of ``states @ items.T`` against ``targets``, computed
    ``LOSS_CHUNK`` positions at a time: the full ``positions x catalog`` logits never exist at once.
    The gradients are computed along with the loss (it is a scalar), so backward only scales them."""

    @staticmethod
    def forward(ctx, states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        grad_states, grad_items = torch.empty_like(states), torch.zeros_like(items)
        total = states.new_zeros(())
        for start in range(0, len(states), LOSS_CHUNK):
            chunk, wanted = states[start : start + LOSS_CHUNK], targets[start : start + LOSS_CHUNK]
            logits = chunk @ items.T
            logits -= logits.amax(dim=1, keepdim=True)  # shifted so exp cannot overflow
            total -= logits.gather(1, wanted[:, None]).sum()
            residual = logits.exp_()  # in place: one exp pass gives both the normalizer and the softmax
            norm = residual.sum(dim=1, keepdim=True)
            total += norm.log().sum()
            residual /= norm
            residual[torch.arange(len(wanted), device=wanted.device), wanted] -= 1.0
            grad_states[start : start + LOSS_CHUNK] = residual @ items
            grad_items.addmm_(residual.T, chunk)
        count = max(len(states), 1)
        ctx.save_for_backward(grad_states / count, grad_items / count)
        return total / count

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_states, grad_items = ctx.saved_tensors
        return grad_states * grad, grad_items * grad, None


def catalog_cross_entropy(model: SequenceEncoder, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full softmax cross-entropy over the catalog of ``states`` against target tokens."""
    return CatalogCrossEntropy.apply(states, model.items.weight[1 : model.n_items + 1], targets - 1)


class Objective(Protocol):
    """How a model family is trained and what it reads to score the next item."""

    causal: bool
    ffn_factor: int
    target_shift: int  # items a training window holds beyond max_len

    def loss(self, model: SequenceEncoder, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Training loss of a ``(sequences, width)`` right-padded token batch."""

    def scoring_sequences(self, histories: Histories, max_len: int, n_items: int) -> SequenceBatches:
        """The model input of each history; the state at its last token scores the next item."""


@dataclass(frozen=True)
class NextItemObjective:
    """SASRec: every position predicts the next item, with full softmax cross-entropy over the
    catalog (``ce``, Klenitskiy & Vasilev 2023) or the original binary cross-entropy against one
    uniformly drawn negative per position that the user's sequence does not contain (``bce``)."""

    loss_kind: str
    causal: bool = True
    ffn_factor: int = 1  # SASRec's point-wise feed-forward keeps the hidden size
    target_shift: int = 1  # a training window holds max_len inputs plus the last one's next item

    def loss(self, model: SequenceEncoder, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        targets = batch[:, 1:]
        used = targets != PAD
        inputs = batch[:, :-1].masked_fill(~used, PAD)  # a row's last item has no next item: drop it from the input
        states = model(inputs)[used]
        if self.loss_kind == "ce":
            return catalog_cross_entropy(model, states, targets[used])
        negatives = torch.from_numpy(unseen_negatives(batch.cpu().numpy(), model.n_items, rng)).to(batch.device)
        positive = (states * model.items(targets[used])).sum(-1)
        negative = (states * model.items(negatives[:, 1:][used])).sum(-1)
        return nn.functional.softplus(-positive).mean() + nn.functional.softplus(negative).mean()

    def scoring_sequences(self, histories: Histories, max_len: int, n_items: int) -> SequenceBatches:
        return history_batches(histories, max_len)


@dataclass(frozen=True)
class MaskedItemObjective:
    """BERT4Rec: each item is replaced by ``[MASK]`` with probability ``mask_prob`` (at least one per
    sequence) and predicted with full softmax cross-entropy over the catalog; at prediction a
    ``[MASK]`` appended after the history stands for the next item."""

    mask_prob: float
    causal: bool = False
    ffn_factor: int = 4  # BERT's feed-forward is four times the hidden size
    target_shift: int = 0

    def loss(self, model: SequenceEncoder, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        present = (batch != PAD).cpu().numpy()
        masked = present & (rng.random(present.shape) < self.mask_prob)
        unmasked = np.flatnonzero(~masked.any(axis=1))
        masked[unmasked, present[unmasked].sum(axis=1) - 1] = True  # nothing masked teaches nothing: mask the last item
        masked = torch.from_numpy(masked).to(batch.device)
        inputs = batch.masked_fill(masked, model.n_items + 1)
        return catalog_cross_entropy(model, model(inputs)[masked], batch[masked])

    def scoring_sequences(self, histories: Histories, max_len: int, n_items: int) -> SequenceBatches:
        history = history_batches(histories, max_len - 1)
        indptr = history.indptr + np.arange(len(history.indptr))
        tokens = np.full(indptr[-1], n_items + 1, np.int64)
        is_history = np.ones(indptr[-1], bool)
        is_history[indptr[1:] - 1] = False  # each row's last slot keeps the [MASK]
        tokens[is_history] = history.tokens
        return SequenceBatches(tokens, indptr)


def unseen_negatives(sequences: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """One uniform item token per position that its row's sequence does not contain (redrawn until so)."""
    negatives = rng.integers(1, n_items + 1, sequences.shape)
    for _ in range(100):  # a row holding most of the catalog could collide forever: cap the redraws
        clash = (negatives[:, :, None] == sequences[:, None, :]).any(axis=2)
        if not clash.any():
            break
        negatives[clash] = rng.integers(1, n_items + 1, int(clash.sum()))
    return negatives


@dataclass
class TrainedEncoder:
    """The best weights found, where validation NDCG@10 peaked, and the curve of every check."""

    model: SequenceEncoder
    objective: Objective
    device: torch.device
    max_len: int
    best_epoch: int = 0
    best_ndcg: float = -1.0
    epochs_run: int = 0
    seconds: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)

    def score(self, examples: ExampleSet) -> np.ndarray:
        """``(len(examples), n_items)`` scores of the next item after each example's history."""
        sequences = self.objective.scoring_sequences(examples.histories, self.max_len, self.model.n_items)
        self.model.eval()
        scores = np.empty((len(sequences), self.model.n_items), np.float32)
        order = np.argsort(sequences.lengths, kind="stable")  # similar lengths together: little padding
        with torch.inference_mode():
            for start in range(0, len(order), SCORE_BATCH):
                rows = order[start : start + SCORE_BATCH]
                tokens = torch.from_numpy(sequences.batch(rows)).to(self.device)
                scores[rows] = self.model.catalog_logits(self.model.last_states(tokens)).float().cpu().numpy()
        return scores

    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch, "validation_ndcg@10": round(self.best_ndcg, 6),
            "epochs_run": self.epochs_run, "train_seconds": round(self.seconds, 1),
            "curve": [[epoch, round(ndcg, 4)] for epoch, ndcg in self.curve],
        }


def train_encoder(data: FitData, config: EncoderConfig, dropout: float, objective: Objective, seed: int,
                  owner: str) -> TrainedEncoder:
    """Train one model on ``data.train`` with early stopping on validation NDCG@10; keep the best weights."""
    device = resolve_device(config.device, owner)
    sequences = SequenceBatches.from_train(data.train, config.max_len + objective.target_shift)
    if not len(sequences):
        raise ConfigError(f"{owner}: no user has two or more training interactions, so there is nothing to learn from.")
    if not len(data.valid):
        raise ConfigError(f"{owner}: early stopping needs validation examples and the task gave none.")
    fork = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(seed)
        model = SequenceEncoder(data.catalog.n_items, config, dropout, causal=objective.causal,
                                ffn_factor=objective.ffn_factor).to(device)
        trained = TrainedEncoder(model, objective, device, config.max_len)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        rng = np.random.default_rng(seed)
        best_state, stale, start = copy.deepcopy(model.state_dict()), 0, time.perf_counter()
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            for rows in sequences.epoch_batches(config.batch_size, rng):
                loss = objective.loss(model, torch.from_numpy(sequences.batch(rows)).to(device), rng)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            trained.epochs_run = epoch
            if epoch % config.eval_every and epoch != config.max_epochs:
                continue
            ndcg = validation_ndcg(trained.score, data.valid, data.valid_targets)
            trained.curve.append((epoch, ndcg))
            LOG.info("%s dropout=%s epoch %d: validation ndcg@10 %.4f (%.0f s)", owner, dropout, epoch, ndcg, time.perf_counter() - start)
            if ndcg > trained.best_ndcg:
                trained.best_epoch, trained.best_ndcg, stale = epoch, ndcg, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
        trained.seconds = time.perf_counter() - start
    return trained


def choose_dropout(data: FitData, config: Any, grid: tuple[float, ...], objective: Objective, seed: int,
                   owner: str) -> tuple[TrainedEncoder, dict[float, TrainedEncoder]]:
    """Train one model per dropout in ``grid``; the best on validation wins (ties: the earlier value)."""
    trials = {rate: train_encoder(data, config, rate, objective, seed, owner) for rate in grid}
    best = max(trials.values(), key=lambda t: t.best_ndcg)
    return best, trials


def describe_choice(best: TrainedEncoder, trials: dict[float, TrainedEncoder]) -> dict[str, Any]:
    """What a sequential method records in results: the chosen dropout, its training, and every trial."""
    return {
        "device": str(best.device),
        "dropout": next(rate for rate, trial in trials.items() if trial is best),
        **best.summary(),
        "trials": {
            str(rate): {"best_epoch": t.best_epoch, "validation_ndcg@10": round(t.best_ndcg, 6),
                        "epochs_run": t.epochs_run, "train_seconds": round(t.seconds, 1)}
            for rate, t in trials.items()
        },
    }
