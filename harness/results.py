"""Results files: the single source of truth for leaderboards.

One JSON document per run at ``<results dir>/<task>/<method>/<run id>.json`` (schema in
``docs/results-schema.md``), per-example outputs as JSONL beside it. Both are written to a
temporary file and renamed, so a crash never leaves a half-written result; the JSON is written
last, so its presence means the run completed.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from recbench.hashing import stable_hash

SCHEMA = "recbench.result/1"
EXAMPLES_SUFFIX = ".examples.jsonl.gz"
RESULTS_ENV = "RECBENCH_RESULTS"
TRACKED_PACKAGES = (
    "recbench", "numpy", "pandas", "pluggy", "torch", "transformers", "trl", "peft",
    "scikit-learn", "implicit", "rapidfuzz",
)


def default_results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "results"))


def make_run_id(task: str, fingerprint: str, method: str, config: dict[str, Any], seed: int,
                code: dict[str, Any] | None = None) -> str:
    """Equal inputs give the same id: a repeated run is found instead of recomputed.

    ``config`` is the resolved config (preset values filled in) and ``code`` the method's code
    identity (:func:`method_code`), so a changed method, plugin version or preset reruns."""
    key = {"task": task, "protocol": fingerprint, "method": method, "config": config, "seed": seed}
    if code is not None:
        key["code"] = code
    return stable_hash(key, 12)


def method_code(module: str, source: str | bytes, plugin: str) -> dict[str, Any]:
    """A method's code identity: its plugin package and version, and the SHA-256 of its module source."""
    blob = source.encode() if isinstance(source, str) else source
    return {"plugin": plugin, "module": module, "source_sha256": hashlib.sha256(blob).hexdigest()[:16]}


def method_code_of(method_cls: type, plugin: str, also: Iterable[str] = ()) -> dict[str, Any]:
    """:func:`method_code`, plus ``closure_sha256``: the digest of every ``recbench`` module the
    method's module and the modules in ``also`` (the task kind's) import, directly or not. A change
    to shared code that shapes a run (a prompt builder, a reader, a trainer) then reruns it."""
    import inspect

    module = sys.modules[method_cls.__module__]
    path = inspect.getsourcefile(module)
    source = Path(path).read_bytes() if path else inspect.getsource(module).encode()
    closure = source_closure([method_cls.__module__, *also])
    return {**method_code(method_cls.__module__, source, plugin), "closure_sha256": stable_hash(closure, 16)}


def source_closure(roots: Iterable[str], package: str = "recbench") -> dict[str, str]:
    """SHA-256 (16 hex) of the source of each module of ``package`` that ``roots`` import, found by
    reading their ``import`` statements (function-level ones included), without importing anything."""
    import ast

    seen: dict[str, str] = {}
    todo = [r for r in roots if r == package or r.startswith(package + ".")]
    while todo:
        name = todo.pop()
        origin = None if name in seen else _module_file(name)
        if not origin or not origin.endswith(".py"):
            continue
        source = Path(origin).read_bytes()
        seen[name] = hashlib.sha256(source).hexdigest()[:16]
        base = name if origin.endswith("__init__.py") else name.rpartition(".")[0]
        todo.append(name.rpartition(".")[0] or package)  # its packages' __init__ run first
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith(package + ".")]
            elif isinstance(node, ast.ImportFrom):
                parent = node.module or ""
                if node.level:  # relative: up from this module's package
                    parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                    parent = ".".join(parts + ([parent] if parent else []))
                if parent == package or parent.startswith(package + "."):
                    todo += [parent, *(f"{parent}.{a.name}" for a in node.names)]
    return dict(sorted(seen.items()))


def _module_file(name: str) -> str | None:
    """The source file of module ``name``, or None when it is not a module (a function, a class)."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    import importlib.util

    parent, _, leaf = name.rpartition(".")
    if parent:
        parent_file = _module_file(parent)
        if not parent_file or not parent_file.endswith("__init__.py"):  # a plain module has no submodules
            return None
        package = sys.modules.get(parent)
        for folder in (list(package.__path__) if package is not None else [str(Path(parent_file).parent)]):
            for candidate in (Path(folder) / leaf / "__init__.py", Path(folder) / f"{leaf}.py"):
                if candidate.is_file():
                    return str(candidate)
    try:  # a package mapped elsewhere (an editable install's finder): its parent package is imported to ask
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec else None


def resolved_config(config: Any) -> Any:
    """The config with preset values filled in, when its class defines ``resolved()``."""
    resolve = getattr(config, "resolved", None)
    return resolve() if callable(resolve) else config


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it), with the umask's permissions
    (``mkstemp`` alone would leave 0600 where ``open`` gives 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(current)
    return current


def examples_path(result_path: Path) -> Path:
    """The per-example file of a results file: gzip-compressed JSONL (plain ``.jsonl`` from older runs)."""
    compressed = result_path.with_suffix(EXAMPLES_SUFFIX)
    plain = result_path.with_suffix(".examples.jsonl")
    return plain if plain.is_file() and not compressed.is_file() else compressed


def examples_file_of(result_path: Path, document: dict[str, Any]) -> Path:
    """The per-example file a results document names (older documents name none: :func:`examples_path`)."""
    name = document.get("examples_file")
    return result_path.parent / name if name else examples_path(result_path)


def read_examples(path: Path) -> list[dict[str, Any]]:
    """The rows of a per-example file, compressed or not."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


class ResultStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_results_dir()

    def path(self, task: str, method: str, run_id: str) -> Path:
        return self.root / task / method / f"{run_id}.json"

    def load(self, task: str, method: str, run_id: str) -> dict[str, Any] | None:
        path = self.path(task, method, run_id)
        if not path.is_file():
            return None
        return _read(path)

    def write(self, document: dict[str, Any], example_rows: Iterable[dict[str, Any]]) -> Path:
        path = self.path(document["task"]["name"], document["method"]["name"], document["run_id"])
        examples_path = path.with_suffix(EXAMPLES_SUFFIX)
        text = "".join(json.dumps(row, default=_json_default) + "\n" for row in example_rows)
        blob = gzip.compress(text.encode("utf-8"), mtime=0)  # mtime 0: same rows, same bytes
        atomic_write_bytes(examples_path, blob)
        document = {**document, "examples_file": examples_path.name, "examples_sha256": hashlib.sha256(blob).hexdigest()}
        atomic_write_text(path, json.dumps(document, indent=2, default=_json_default) + "\n")
        return path

    def iter_results(self, task: str | None = None) -> Iterator[tuple[Path, dict[str, Any]]]:
        base = self.root / task if task else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*.json")):
            doc = _read(path)
            if doc is not None and doc.get("schema") == SCHEMA:
                yield path, doc

    def newest_by_method(self, task: str | None = None) -> dict[str, dict[str, Any]]:
        """Each method's most recent result (by ``created_at``), whatever its config or protocol."""
        newest: dict[str, dict[str, Any]] = {}
        for _, doc in self.iter_results(task):
            name = (doc.get("method") or {}).get("name")
            if name and str(doc.get("created_at", "")) >= str(newest.get(name, {}).get("created_at", "")):
                newest[name] = doc
        return newest


def examples_problem(path: Path, document: dict[str, Any]) -> str | None:
    """Why the per-example file beside the results file ``path`` cannot back its numbers (missing,
    changed since the run wrote it, or holding another number of rows), or None when it can."""
    examples = examples_file_of(path, document)
    if not examples.is_file():
        return f"its per-example file {examples.name} is missing"
    expected = document.get("examples_sha256")
    if expected:
        return None if hashlib.sha256(examples.read_bytes()).hexdigest() == expected else (
            f"its per-example file {examples.name} changed after the run wrote it")
    try:  # results written before the digest was recorded: count the rows (lines; parsing them is not needed)
        data = examples.read_bytes()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        rows = sum(1 for line in data.splitlines() if line.strip())
    except (OSError, ValueError, EOFError) as exc:
        return f"its per-example file {examples.name} cannot be read ({exc})"
    n = 0 if document.get("ceiling") else document.get("n_examples")  # a ceiling row keeps no per-example outputs
    return None if n is None or rows == n else f"its per-example file {examples.name} holds {rows} rows, not {n}"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"recbench: skipping unreadable results file {path}: {exc}. Delete it and rerun.", file=sys.stderr)
        return None


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def environment() -> dict[str, Any]:
    """Package versions, git commit, interpreter and hardware of this run."""
    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git": _git_state(),
        "hardware": _hardware(),
    }


def _git_state() -> dict[str, Any] | None:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        # outputs (results files, rendered leaderboards) do not make a run irreproducible: a sweep that
        # rewrites a committed result would otherwise mark every later run of the sweep dirty
        outputs = [":(exclude)results", ":(exclude)leaderboards"]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs], cwd=root, capture_output=True,
            text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "gpu": None}
    torch = sys.modules.get("torch")  # only when the method already imported it
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
