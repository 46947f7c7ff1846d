"""Prepared splits cached on disk, checked before use.

A built task is stored under ``$RECBENCH_HOME/splits/<task>-<fingerprint>-<code>/`` as three files:
``inputs.pkl`` (what a method may see: ``FitData`` and the test inputs), ``targets.pkl`` (test
targets and the scoring arrays, which only the runner reads) and ``manifest.json`` (each file's
SHA-256, signed with an HMAC whose key lives in ``$RECBENCH_HOME/splits/.key``). Nothing is
unpickled before its hash and the manifest's signature check out: a truncated, edited or
poisoned cache is reported on stderr and rebuilt, never used.

``<code>`` hashes the source of the code that builds splits (the task kind's module,
:mod:`recbench.splits`, the tie rule in :mod:`recbench.data.catalog`, :mod:`recbench.task`), so
editing any of it never reuses a stale split. Method workers may not open this folder
(:mod:`recbench.worker`); the key file keeps a poisoner from re-signing a manifest.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import os
import pickle
import secrets
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.catalog import TIE_RULE
from recbench.data.store import recbench_home
from recbench.examples import ExampleSet, FitData, Targets
from recbench.task import Task, TaskData

FORMAT = "recbench.split/2"


@dataclass(frozen=True)
class PreparedInputs:
    """What a method may see of a built task."""

    fit: FitData
    test_inputs: ExampleSet
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedTargets:
    """What only the runner reads: the test targets and the arrays metrics need."""

    test_targets: Targets
    subsets: dict[str, np.ndarray] = field(default_factory=dict)
    outcome: dict[str, np.ndarray] = field(default_factory=dict)


def splits_dir() -> Path:
    return recbench_home() / "splits"


def code_identity(task: Task) -> str:
    """SHA-256 (8 hex) of the code that builds this task's splits, plus the tie rule and kind."""
    import recbench.data.catalog
    import recbench.splits
    import recbench.task

    digest = hashlib.sha256(f"{task.kind}\n{TIE_RULE}\n".encode())
    for module in (type(task), recbench.splits, recbench.data.catalog, recbench.task):
        digest.update(Path(inspect.getsourcefile(module) or "").read_bytes())
    return digest.hexdigest()[:8]


def cache_folder(task: Task, protocol: dict[str, Any]) -> Path:
    return splits_dir() / f"{task.spec.name}-{protocol['fingerprint']}-{code_identity(task)}"


def load_or_build(task: Task, catalog: Any, protocol: dict[str, Any]) -> TaskData:
    """The task's data from a verified cache, else built (and subsampled) and cached."""
    folder = cache_folder(task, protocol)
    if folder.is_dir():
        try:
            return load(folder)
        except CacheIntegrityError as exc:
            print(f"recbench: warning: {exc}; rebuilding it.", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
    data = task.subsample(task.build(catalog))
    save(folder, data)
    return data


class CacheIntegrityError(Exception):
    """A cached split is missing a file, or a file or its manifest does not match its recorded hash."""


def save(folder: Path, data: TaskData) -> None:
    """Write ``data`` as a signed cache folder; readers never see a half-written one."""
    parts = {
        "inputs.pkl": PreparedInputs(data.fit, data.test_inputs, data.stats),
        "targets.pkl": PreparedTargets(data.test_targets, data.subsets, data.outcome),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    files = {}
    for name, part in parts.items():
        blob = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        (tmp / name).write_bytes(blob)
        files[name] = hashlib.sha256(blob).hexdigest()
    manifest = {"format": FORMAT, "files": files}
    manifest["mac"] = _mac(manifest)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    try:
        tmp.rename(folder)
    except OSError:  # another process cached the same split first; theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)


def load(folder: Path) -> TaskData:
    """Verify the manifest's signature and every file's hash, then unpickle."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise CacheIntegrityError(f"split cache {folder} has no readable manifest ({exc})") from None
    if manifest.get("format") != FORMAT or not hmac.compare_digest(str(manifest.get("mac")), _mac(manifest)):
        raise CacheIntegrityError(f"split cache {folder}: manifest.json is not signed by this recbench home (edited?)")
    parts = {}
    for name, expected in manifest["files"].items():
        try:
            blob = (folder / name).read_bytes()
        except OSError as exc:
            raise CacheIntegrityError(f"split cache {folder}: {name} cannot be read ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != expected:
            raise CacheIntegrityError(f"split cache {folder}: {name} does not match its recorded SHA-256 (tampered or truncated)")
        parts[name] = pickle.loads(blob)
    inputs, targets = parts["inputs.pkl"], parts["targets.pkl"]
    return TaskData(fit=inputs.fit, test_inputs=inputs.test_inputs, test_targets=targets.test_targets,
                    subsets=targets.subsets, outcome=targets.outcome, stats=inputs.stats)


def _mac(manifest: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in manifest.items() if k != "mac"}, sort_keys=True).encode()
    return hmac.new(_key(), body, hashlib.sha256).hexdigest()


def _key() -> bytes:
    """This home's signing key, created on first use (readable by its owner only)."""
    path = splits_dir() / ".key"
    for _ in range(50):
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".key.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
            try:
                os.link(tmp, path)  # atomic, and never replaces a key another process made first
            except FileExistsError:
                pass
            tmp.unlink()
            continue
        if len(key) == 32:
            return key
        time.sleep(0.01)
    raise CacheIntegrityError(f"the split-cache signing key {path} is not 32 bytes; delete it (the caches rebuild)")
