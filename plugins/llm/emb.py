"""``emb0`` and ``emb_cl``: a sentence embedder ranks the catalog against the history's item texts.

``emb0`` (EMB-0 of the LangPTune paper): a frozen embedder embeds the history's item texts (one
line per item, oldest first; see :mod:`recbench.llm.embed`) and every item's text; items are
ranked by cosine similarity (one matrix product per batch; the item matrix is computed once per
embedder state). ``emb_cl`` (EMB-CL): the embedder first trained with InfoNCE, in-batch negatives
(sentence-transformers' ``MultipleNegativesRankingLoss``), on (history text, next item text) pairs:
the task's labelled training examples when it gives them, else windows of the training
interactions. The learning rate is fixed by the preset (the paper's 1e-5 at ``paper``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData
from recbench.method import ScoringMethod

EMB_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"embedder": "all-minilm-l6-v2", "train_sessions": 300, "steps": 20, "batch_size": 32, "lr": 5e-5},
    "paper": {"embedder": "mixedbread-ai/mxbai-embed-large-v1", "train_sessions": 0, "steps": 4000, "batch_size": 256, "lr": 1e-5},
}  # paper: K=5 x J=800 InfoNCE steps of 256 pairs, lr 1e-5, weight decay 1e-6, linear decay (appendix C)


@dataclass(frozen=True)
class EmbConfig:
    presets: ClassVar[dict[str, dict[str, Any]]] = EMB_PRESETS
    preset: Literal["smoke", "paper"] = option("smoke", "values of the options left at None")
    embedder: str | None = option(None, "alias all-minilm-l6-v2, a sentence-transformers folder or hub id (smoke MiniLM, paper mxbai-embed-large)")
    max_history: int = option(20, "most recent history items in the history text")
    max_seq_length: int = option(256, "embedder token limit per text")
    encode_batch_size: int = option(64, "texts per encode batch")
    torch_threads: int = option(0, "torch CPU threads (0: torch's default)")
    train_sessions: int | None = option(None, "training pairs used, a seeded draw; 0 = all (smoke 300)")
    steps: int | None = option(None, "InfoNCE steps (emb_cl; smoke 20, paper 4000)")
    batch_size: int | None = option(None, "pairs per InfoNCE batch: in-batch negatives (smoke 32, paper 256)")
    lr: float | None = option(None, "InfoNCE learning rate, linear decay (smoke 5e-5, paper 1e-5)")
    weight_decay: float = option(1e-6, "AdamW weight decay")

    def __post_init__(self) -> None:
        if self.preset not in self.presets:
            raise ValueError(f"preset must be one of {sorted(self.presets)}, got {self.preset!r}")

    def resolved(self) -> EmbConfig:
        return replace(self, **{k: v for k, v in self.presets[self.preset].items() if getattr(self, k) is None})


def training_pairs(data: FitData, max_history: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(history, next item) pairs: the task's labelled training examples, else windows of ``train``."""
    if data.train_examples is not None and data.train_targets is not None and data.train_targets.counts.max(initial=0) == 1:
        ex = data.train_examples
        return [ex.histories.items_of(i)[-max_history:] for i in range(len(ex))], data.train_targets.items.copy()
    histories, targets = [], []
    for _, group in data.train.groupby("user", sort=True):
        items = group["item"].to_numpy()
        for end in range(1, len(items)):
            histories.append(items[max(0, end - max_history): end])
            targets.append(items[end])
    return histories, np.asarray(targets, dtype=np.int64)


class Emb0(ScoringMethod):
    name = "emb0"
    description = "EMB-0: frozen sentence embedder, history item texts vs item texts, cosine ranking"
    Config = EmbConfig
    train_embedder: ClassVar[bool] = False

    def fit(self, data: FitData) -> None:
        import torch

        from recbench.llm.embed import Embedder, item_texts, train_infonce

        super().fit(data)
        c = self.resolved = self.config.resolved()
        if c.torch_threads:
            torch.set_num_threads(c.torch_threads)
        torch.manual_seed(self.seed)
        self.texts, self.text_counts = item_texts(data.catalog.items)
        self.embedder = Embedder(c.embedder, max_seq_length=c.max_seq_length, batch_size=c.encode_batch_size)
        self.losses: list[float] = []
        if self.train_embedder:
            histories, targets = training_pairs(data, c.max_history)
            rows = np.arange(len(targets))
            if c.train_sessions:
                rows = np.sort(np.random.default_rng(self.seed).permutation(len(rows))[: c.train_sessions])
            queries = [self.history_text(histories[r]) for r in rows]
            positives = [self.texts[int(targets[r])] for r in rows]
            self.losses = train_infonce(self.embedder, queries, positives, steps=c.steps, batch_size=min(c.batch_size, len(rows)),
                                        lr=c.lr, weight_decay=c.weight_decay, seed=self.seed)
        self.items = self.embedder.item_matrix(self.texts)

    def history_text(self, history: np.ndarray) -> str:
        from recbench.llm.embed import history_text

        return history_text(self.texts, history[-self.resolved.max_history:])

    def score(self, examples: ExampleSet) -> np.ndarray:
        from recbench.llm.embed import rank

        queries = self.embedder.encode([self.history_text(examples.histories.items_of(i)) for i in range(len(examples))])
        return rank(queries, self.embedder.item_matrix(self.texts)).astype(np.float64)

    def describe(self) -> dict:
        c = self.resolved
        out = {"resolved": {k: getattr(c, k) for k in c.presets[c.preset]}, "embedder": self.embedder.provenance,
               "item_text": self.text_counts, "item_matrix_builds": self.embedder.item_matrix_builds,
               "item_matrix_seconds": round(self.embedder.item_seconds, 2)}
        if self.losses:
            out["infonce_loss"] = {"first": round(self.losses[0], 4), "last": round(self.losses[-1], 4), "steps": len(self.losses)}
        return out


class EmbCL(Emb0):
    name = "emb_cl"
    description = "EMB-CL: the sentence embedder trained with InfoNCE (in-batch negatives) on (history text, next item text)"
    train_embedder = True


@hookimpl
def recbench_register_methods(register):
    register(Emb0)
    register(EmbCL)
