"""A sqlite cache in front of any backend: a rerun costs nothing, an interrupted run resumes.

Keys hash the backend's fingerprint (weights, tokenizer, chat template, dtype), the prompt's
messages, and either every decoding parameter or the forced prefix, normalization and the exact
continuation list. Requests missing from the cache go to the wrapped backend in chunks of
``chunk_size`` prompts, and each chunk is committed as soon as it completes, so a run killed
midway keeps its finished chunks. Attributes the cache does not define (``count_tokens``, ...)
are the wrapped backend's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recbench import progress
from recbench.errors import ConfigError, RecbenchError
from recbench.llm.backend import (
    Backend,
    DecodingParams,
    Generation,
    Normalize,
    Prompt,
    check_normalize,
    check_prompts,
    prompt_hash,
)

_TABLES = {"generations": "TEXT", "scores": "BLOB"}


class CachedBackend:
    """Wraps ``backend``; answers repeated ``generate``/``score`` requests from the sqlite file ``path``."""

    def __init__(self, backend: Backend, path: str | Path, *, chunk_size: int = 32) -> None:
        if chunk_size < 1:
            raise ConfigError(f"CachedBackend: chunk_size={chunk_size}; need >= 1.")
        self.inner, self.path, self.chunk_size = backend, Path(path), chunk_size
        self.fingerprint = backend.fingerprint
        self.hits = self.misses = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the threads of a pool; the lock keeps its use serial
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block writers
            for table, kind in _TABLES.items():
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value {kind} NOT NULL)")

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not yet set (during unpickling): avoid recursing forever
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CachedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the Backend protocol ----------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: DecodingParams) -> list[list[Generation]]:
        check_prompts(prompts, "CachedBackend.generate")
        settings = json.dumps(params.to_dict(), sort_keys=True)
        keys = [self._key("generate", prompt_hash(p), settings) for p in prompts]

        def compute(indices: list[int]) -> list[str]:
            answers = self.inner.generate([prompts[i] for i in indices], params)
            return [json.dumps([[g.text, g.n_tokens] for g in gens]) for gens in answers]

        stored = self._fetch("generations", keys, compute)
        return [[Generation(text, n) for text, n in json.loads(stored[key])] for key in keys]

    def score(
        self,
        prompts: Sequence[Prompt],
        continuations: Sequence[Sequence[str]],
        *,
        forced_prefix: str = "",
        normalize: Normalize = "mean",
    ) -> list[np.ndarray]:
        check_prompts(prompts, "CachedBackend.score")
        check_normalize(normalize, "CachedBackend.score")
        if len(prompts) != len(continuations) or any(isinstance(c, str) for c in continuations):
            raise ConfigError(
                f"CachedBackend.score: need one list of continuation strings per prompt; got {len(prompts)} prompts "
                f"and {len(continuations)} entries."
            )
        keys = [
            self._key("score", prompt_hash(p), forced_prefix, normalize, json.dumps(list(options), ensure_ascii=False))
            for p, options in zip(prompts, continuations)
        ]

        def compute(indices: list[int]) -> list[bytes]:
            answers = self.inner.score([prompts[i] for i in indices], [continuations[i] for i in indices],
                                       forced_prefix=forced_prefix, normalize=normalize)  # fmt: skip
            return [np.asarray(a, dtype="<f8").tobytes() for a in answers]

        stored = self._fetch("scores", keys, compute)
        return [np.frombuffer(stored[key], dtype="<f8").copy() for key in keys]

    # --- storage -------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return hashlib.sha256(json.dumps([self.fingerprint, *parts]).encode("utf-8")).hexdigest()

    def _fetch(self, table: str, keys: list[str], compute: Callable[[list[int]], list[Any]]) -> dict[str, Any]:
        """Every key's stored value; missing ones computed chunk by chunk, each chunk committed."""
        stored: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for lo in range(0, len(unique), 500):  # sqlite limits the parameters of one statement
                part = unique[lo : lo + 500]
                marks = ",".join("?" * len(part))
                stored.update(self._db.execute(f"SELECT key, value FROM {table} WHERE key IN ({marks})", part))
        first_index: dict[str, int] = {}
        for index, key in enumerate(keys):
            first_index.setdefault(key, index)
        missing = [key for key in first_index if key not in stored]
        self.misses += len(missing)  # prompts sent to the wrapped backend; every other request is a hit
        self.hits += len(keys) - len(missing)
        progress.advance(len(keys) - len(missing))  # answered from here; the wrapped backend counts the rest
        for lo in range(0, len(missing), self.chunk_size):
            chunk = missing[lo : lo + self.chunk_size]
            values = compute([first_index[key] for key in chunk])
            if len(values) != len(chunk):
                raise RecbenchError(
                    f"CachedBackend: the wrapped backend {self.fingerprint!r} answered {len(values)} of {len(chunk)} "
                    "prompts; a backend must answer every prompt, in order."
                )
            with self._lock, self._db:
                self._db.executemany(f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)", zip(chunk, values))
            stored.update(zip(chunk, values))
        return stored
