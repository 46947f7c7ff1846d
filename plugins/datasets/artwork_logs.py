"""Real artwork logs (JSONL or Parquet, schema in ``docs/artwork-logs.md``) as artwork datasets.

:func:`load_artwork_logs` validates every record and names the file, line (or Parquet row),
problem and fix of the first bad one. :func:`add_artwork_logs` (``recbench data add-artwork-logs``)
caches the catalog and writes a descriptor ``recbench_home()/artwork-logs.d/NAME.toml``; the hook
below registers one dataset per descriptor, for ``recbench run --task artwork --dataset NAME``. A
descriptor that cannot be read or takes a name already in use is skipped with a warning.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.data.catalog import Catalog, build_catalog
from recbench.data.store import DatasetSpec, recbench_home, save_to_cache
from recbench.errors import DatasetError
from recbench.plugins.datasets.artwork_data import artwork_info
from recbench.plugins.datasets.user_data import builtin_dataset_names, check_new_dataset_name, user_dataset_names, warn_skipped

REQUIRED = ("user_id", "title_id", "timestamp", "artworks", "engaged")
DOC = "see docs/artwork-logs.md"


def descriptors_dir() -> Path:
    return recbench_home() / "artwork-logs.d"


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` pairs: ``line N`` of a JSONL file or ``row N`` of a Parquet file."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found.")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DatasetError(f"{path}: cannot read as Parquet: {exc}") from exc
        yield from ((f"row {n}", row) for n, row in enumerate(rows, start=1))
        return
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path} line {n}: not valid JSON ({exc.msg} at column {exc.colno}). Each line must hold one "
                    f"JSON object; {DOC}."
                ) from None


class _Validator:
    """Checks one record at a time and accumulates the catalog's tables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.users: dict[str, dict[str, Any]] = {}
        self.titles: dict[str, dict[str, Any]] = {}
        self.artworks: dict[str, tuple[list[dict[str, Any]], str]] = {}  # title -> (artworks, where first listed)
        self.history: dict[tuple[str, str, int], float] = {}
        self.log: list[dict[str, Any]] = []

    def fail(self, where: str, problem: str) -> DatasetError:
        return DatasetError(f"{self.path} {where}: {problem}")

    def add(self, where: str, record: Any) -> None:
        if not isinstance(record, dict):
            raise self.fail(where, f"expected a JSON object, got {type(record).__name__}; {DOC}.")
        missing = [key for key in REQUIRED if record.get(key) is None]
        if missing:
            raise self.fail(where, f"missing field(s) {missing}; every record needs {list(REQUIRED)} ({DOC}).")
        user, title = str(record["user_id"]), str(record["title_id"])
        timestamp = self.timestamp(record["timestamp"], where, "timestamp")
        artworks = self.artwork_list(record["artworks"], title, where)
        ids = [a["artwork_id"] for a in artworks]
        engaged = str(record["engaged"])
        if engaged not in ids:
            raise self.fail(where, f"engaged artwork {engaged!r} is not among the record's artworks {ids}; "
                                   "it must be the artwork_id of one of them.")
        propensity = self.number(record.get("propensity", 1.0 / len(ids)), where, "propensity", low_open=True)
        reward = self.number(record.get("reward", 1.0), where, "reward", low_open=False)
        self.users.setdefault(user, {"user_id": user})
        if isinstance(record.get("user"), dict):
            self.users[user].update({k: v for k, v in record["user"].items() if k in ("age", "gender", "occupation")})
        self.note_title(title, record)
        for n, entry in enumerate(record.get("history") or [], start=1):
            if not isinstance(entry, dict) or entry.get("title_id") is None or entry.get("timestamp") is None:
                raise self.fail(where, f"history entry {n} needs title_id and timestamp; got {entry!r}.")
            seen_at = self.timestamp(entry["timestamp"], where, f"history entry {n} timestamp")
            if seen_at >= timestamp:
                raise self.fail(where, f"history entry {n} ({entry['title_id']!r}) is at or after the record's timestamp "
                                       f"{timestamp}; a history holds only earlier interactions.")
            self.note_title(str(entry["title_id"]), entry)
            rating = entry.get("rating")
            self.history[(user, str(entry["title_id"]), seen_at)] = float(rating) if rating is not None else math.nan
        self.log.append({"user_id": user, "title_id": title, "timestamp": timestamp, "engaged": engaged,
                         "propensity": propensity, "reward": reward, "has_reward": "reward" in record})

    def timestamp(self, value: Any, where: str, field: str) -> int:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(pd.Timestamp(value).timestamp())  # a date without a zone is read as UTC
            except ValueError:
                pass
        raise self.fail(where, f"{field} must be whole Unix seconds or an ISO-8601 date, got {value!r}.")

    def number(self, value: Any, where: str, field: str, *, low_open: bool) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (0 < value <= 1 if low_open else 0 <= value <= 1)
        if not ok:
            span = "(0, 1]" if low_open else "[0, 1]"
            raise self.fail(where, f"{field} must be a number in {span}, got {value!r}"
                                   + ("; omit it for uniform logging (1/m)." if field == "propensity" else "."))
        return float(value)

    def artwork_list(self, value: Any, title: str, where: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or len(value) < 2:
            raise self.fail(where, f"artworks must be a list of at least 2 options, got {value!r:.80}.")
        for n, art in enumerate(value, start=1):
            if not isinstance(art, dict) or not art.get("artwork_id") or not isinstance(art.get("caption"), str) or not art["caption"].strip():
                raise self.fail(where, f"artwork option {n} needs a non-empty artwork_id and caption; got {art!r:.120}.")
        artworks = [{"artwork_id": str(a["artwork_id"]), "caption": a["caption"], "image": a.get("image")} for a in value]
        ids = [a["artwork_id"] for a in artworks]
        if len(set(ids)) != len(ids):
            raise self.fail(where, f"artwork ids repeat within the record: {ids}.")
        known = self.artworks.get(title)
        if known is None:
            self.artworks[title] = (artworks, where)
        elif known[0] != artworks:
            raise self.fail(where, f"title {title!r} lists artworks {ids}, but {known[1]} lists "
                                   f"{[a['artwork_id'] for a in known[0]]} with their captions; every record of a title "
                                   "must list the same artworks, with the same captions, in the same order (the option numbers).")
        return artworks

    def note_title(self, title: str, record: dict[str, Any]) -> None:
        entry = self.titles.setdefault(title, {"item_id": title})
        for key in ("title", "year"):
            if record.get(key) is not None:
                entry.setdefault(key, record[key])
        genres = record.get("genres")
        if genres is not None:
            entry.setdefault("genres", "|".join(genres) if isinstance(genres, list) else str(genres))


def load_artwork_logs(path: str | Path, name: str = "artwork-logs") -> Catalog:
    """Validate an artwork log file and build its catalog with ``artworks`` and ``artwork_log`` tables."""
    path = Path(path).expanduser()
    check = _Validator(path)
    for where, record in _records(path):
        check.add(where, record)
    if not check.log:
        raise DatasetError(f"{path}: no records; {DOC}.")
    owners = {}
    for title, (artworks, where) in check.artworks.items():
        for art in artworks:
            if owners.setdefault(art["artwork_id"], title) != title:
                raise DatasetError(f"{path} {where}: artwork {art['artwork_id']!r} belongs to titles "
                                   f"{owners[art['artwork_id']]!r} and {title!r}; artwork ids must be unique.")
    history = pd.DataFrame([(u, t, ts, r) for (u, t, ts), r in check.history.items()],
                           columns=["user_id", "item_id", "timestamp", "rating"])
    catalog = build_catalog(
        name, history, pd.DataFrame(list(check.titles.values())), pd.DataFrame(list(check.users.values())),
        source={"kind": "artwork_logs", "file": str(path)}, file_names={k: str(path) for k in ("interactions", "items", "users")},
    )  # fmt: skip
    item_code = pd.Series(np.arange(catalog.n_items), index=catalog.items["item_id"])
    rows = [{"artwork_id": art["artwork_id"], "item": int(item_code[title]), "option": n, "caption": art["caption"],
             "image": art["image"]} for title, (arts, _) in check.artworks.items() for n, art in enumerate(arts, start=1)]
    artworks = pd.DataFrame(rows).sort_values(["item", "option"], kind="stable").reset_index(drop=True)
    if artworks["image"].isna().all():
        artworks = artworks.drop(columns="image")
    artworks = artworks.astype({"item": np.int32, "option": np.int32})
    log = pd.DataFrame(check.log)
    user_code = pd.Series(np.arange(catalog.n_users), index=catalog.users["user_id"])
    art_code = pd.Series(np.arange(len(artworks)), index=artworks["artwork_id"])
    table = pd.DataFrame({
        "user": user_code[log["user_id"]].to_numpy(np.int32), "item": item_code[log["title_id"]].to_numpy(np.int32),
        "timestamp": log["timestamp"].to_numpy(np.int64), "chosen": art_code[log["engaged"]].to_numpy(np.int64),
        "propensity": log["propensity"].to_numpy(np.float64),
    })  # fmt: skip
    if log["has_reward"].any():
        table["reward"] = log["reward"].to_numpy(np.float64)
    table = table.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    return replace(catalog, tables={"artworks": artworks, "artwork_log": table})


def _file_key(path: str) -> str:
    stat = Path(path).stat() if Path(path).exists() else None
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{path}:missing"


def _spec(name: str, logs: str) -> DatasetSpec:
    return DatasetSpec(name, f"artwork logs from {logs}", lambda ctx: load_artwork_logs(logs, name),
                       cache_key=lambda: _file_key(logs), info=artwork_info)


def add_artwork_logs(name: str, logs: str | Path) -> Path:
    """Validate ``logs``, cache its catalog and register it as dataset ``name``; returns the descriptor.

    Adding a name again replaces the earlier descriptor and cached catalog."""
    check_new_dataset_name(name, owner=__name__)
    logs = str(Path(logs).expanduser().resolve())
    catalog = load_artwork_logs(logs, name)
    descriptor = descriptors_dir() / f"{name}.toml"
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    descriptor.write_text(f"# written by `recbench data add-artwork-logs`\nname = {json.dumps(name)}\n"
                          f"logs = {json.dumps(logs)}\n")
    save_to_cache(name, replace(catalog, provenance={**catalog.provenance, "cache_key": _file_key(logs)}))
    return descriptor


def _descriptor_specs() -> list[tuple[Path, DatasetSpec]]:
    """``(descriptor, spec)`` per readable descriptor; a broken one is skipped with a warning naming it."""
    specs = []
    for path in sorted(descriptors_dir().glob("*.toml")) if descriptors_dir().is_dir() else []:
        try:
            raw = tomllib.loads(path.read_text())
            specs.append((path, _spec(raw["name"], raw["logs"])))
        except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
            warn_skipped(path, f"broken artwork-logs descriptor ({type(exc).__name__}: {exc})")
    return specs


def artwork_log_specs() -> list[DatasetSpec]:
    return [spec for _, spec in _descriptor_specs()]


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    taken = builtin_dataset_names() | user_dataset_names()
    for path, spec in _descriptor_specs():
        if spec.name in taken:
            warn_skipped(path, f"it registers {spec.name!r}, a name a built-in dataset or `recbench data add` already uses")
            continue
        register(spec)
