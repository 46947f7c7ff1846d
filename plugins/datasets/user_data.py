"""A user's own interactions (CSV, TSV or Parquet) as a dataset, declared once with a column map.

``recbench data add NAME --interactions PATH --map user_id=uid,...`` calls :func:`add_user_dataset`,
which validates the files by building the catalog, caches it, and writes a descriptor
``recbench_home()/datasets.d/NAME.toml``; the hook below registers one dataset per descriptor.
A descriptor that cannot be read, or that takes a built-in dataset's name, is skipped with a
warning naming the file: one bad local registration must never stop every ``recbench`` command.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench import hookimpl
from recbench.data.catalog import Catalog, build_catalog
from recbench.data.store import DatasetSpec, FetchContext, recbench_home, save_to_cache
from recbench.errors import ConfigError, DatasetError
from recbench.registry import NAME_PATTERN

# which recbench column each mapping key names, per file
INTERACTION_KEYS = ("user_id", "item_id", "timestamp", "rating")
ITEM_KEYS = ("item_id", "title", "year", "genres", "text")
USER_KEYS = ("user_id", "age", "gender", "occupation", "zip_code")
# the built-in tasks hold out each user's last interactions and keep users with at least this many
MIN_USER_INTERACTIONS = 3
# built-in modules whose dataset names local registrations may never take
BUILTIN_DATASET_MODULES = ("movielens", "synthetic", "artwork_data")


def descriptors_dir() -> Path:
    return recbench_home() / "datasets.d"


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            # text keeps ids like "007" intact; numbers are parsed later with row numbers in errors
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found.") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    raise DatasetError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .parquet.")


def _select(frame: pd.DataFrame, path: Path, mapping: dict[str, str], keys: tuple[str, ...]) -> pd.DataFrame:
    """Rename mapped columns to recbench names; a mapped column the file lacks is an error.

    An id key (``user_id``/``item_id``) whose mapped column is absent may use a column already
    named like the key: a users file often calls it ``user_id`` while the interactions do not.
    """
    renames = {}
    for key in keys:
        column = mapping.get(key, key)
        if column in frame.columns:
            renames[column] = key
        elif key.endswith("_id") and key in frame.columns:
            renames[key] = key
        elif key in mapping:
            raise DatasetError(
                f"{path}: the mapping {key}={column} names column {column!r}, which the file does not have; "
                f"its columns are {list(frame.columns)}. Fix --map."
            )
    return frame[list(renames)].rename(columns=renames).reset_index(drop=True)


def _timestamps(values: pd.Series, path: Path, timestamp_format: str | None) -> pd.Series:
    """Unix seconds, from numbers or from date strings (``timestamp_format`` as in strptime)."""
    if timestamp_format is None:
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            return values  # build_catalog checks them for whole seconds with row numbers
        if numeric.notna().any():  # mostly Unix seconds: name the rows that are not numbers
            bad = np.flatnonzero(numeric.isna().to_numpy())
            rows = ", ".join(str(r + 1) for r in bad[:5])
            raise DatasetError(
                f"{path}: column 'timestamp' holds Unix seconds, but data rows {rows} are not numbers "
                f"(first: {values.iloc[bad[0]]!r}). Fix those rows; a column of dates takes --timestamp-format."
            )
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format=timestamp_format)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        rows = ", ".join(str(r + 1) for r in bad[:5])
        raise DatasetError(
            f"{path}: column 'timestamp' has values that are neither Unix seconds nor dates at rows {rows} "
            f"(first: {values.iloc[bad[0]]!r}). Fix them or pass --timestamp-format (e.g. '%d/%m/%Y')."
        )
    return (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def _drop_repeated_rows(inter: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, int]:
    """Drop exact repeats of a row, returning how many; the same user, item and timestamp with
    different values is an error naming the rows. Either kind of repeat would put a held-out
    interaction into the training data (every run would then stop on a target leak)."""
    exact = inter.duplicated(keep="first")
    kept = inter[~exact]
    keys = [c for c in ("user_id", "item_id", "timestamp") if c in kept]
    clash = kept.duplicated(keys, keep=False)
    if clash.any():
        rows = ", ".join(str(r + 1) for r in kept.index[clash][:6])
        others = [c for c in kept.columns if c not in keys]
        raise DatasetError(
            f"{path}: data rows {rows} record the same user, item and timestamp with different {others}; "
            "keep one row per user, item and timestamp."
        )
    return kept.reset_index(drop=True), int(exact.sum())


def catalog_from_files(
    name: str,
    interactions: Path,
    items: Path | None = None,
    users: Path | None = None,
    *,
    mapping: dict[str, str] | None = None,
    timestamp_format: str | None = None,
) -> Catalog:
    """Validate the files and build their catalog; ``mapping`` is recbench name -> file column."""
    mapping = dict(mapping or {})
    valid = set(INTERACTION_KEYS + ITEM_KEYS + USER_KEYS)
    if unknown := sorted(set(mapping) - valid):
        raise ConfigError(f"unknown mapping key(s) {unknown}; valid keys: {', '.join(sorted(valid))}.")
    interactions, items, users = (Path(p).expanduser() if p else None for p in (interactions, items, users))
    raw = _read(interactions)
    # without an items/users file, their attributes may sit in the interactions file (first row wins)
    keys = INTERACTION_KEYS + (ITEM_KEYS[1:] if items is None else ()) + (USER_KEYS[1:] if users is None else ())
    inter = _select(raw, interactions, mapping, keys)
    if "timestamp" in inter:
        inter["timestamp"] = _timestamps(inter["timestamp"], interactions, timestamp_format)
    inter, duplicates = _drop_repeated_rows(inter, interactions)
    if items is not None:
        item_table = _select(_read(items), items, mapping, ITEM_KEYS)
    else:
        item_cols = [k for k in ITEM_KEYS if k in inter]
        item_table = inter[item_cols].drop_duplicates("item_id") if "item_id" in inter else pd.DataFrame({"item_id": []})
    user_table = None
    if users is not None:
        user_table = _select(_read(users), users, mapping, USER_KEYS)
    elif "user_id" in inter and len(user_cols := [k for k in USER_KEYS if k in inter]) > 1:
        user_table = inter[user_cols].drop_duplicates("user_id")
    if user_table is not None and "age" in user_table:
        user_table["age"] = pd.to_numeric(user_table["age"], errors="coerce").astype("Int64")
    source = {
        "kind": "user_files",
        "files": {k: str(p) for k, p in zip(("interactions", "items", "users"), (interactions, items, users)) if p},
        "mapping": mapping,
        "timestamp_format": timestamp_format,
        "duplicate_rows_dropped": duplicates,
    }
    files = {"interactions": str(interactions), "items": str(items or interactions)}
    files["users"] = str(users or interactions)
    return build_catalog(name, inter, item_table, user_table, source=source, file_names=files)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string without \\u escapes is a TOML basic string


def _files_key(paths: list[str]) -> str:
    # size and modification time: editing a file invalidates the cached catalog
    parts = []
    for path in paths:
        stat = Path(path).stat() if Path(path).exists() else None
        parts.append(f"{path}:{stat.st_size}:{stat.st_mtime_ns}" if stat else f"{path}:missing")
    return "|".join(parts)


def _spec_from_descriptor(path: Path) -> DatasetSpec:
    try:
        raw = tomllib.loads(path.read_text())
        name, inter = raw["name"], raw["interactions"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ConfigError(
            f"{path}: broken dataset descriptor ({type(exc).__name__}: {exc}); re-run `recbench data add` or delete the file."
        ) from exc
    files = [raw[k] for k in ("interactions", "items", "users") if raw.get(k)]

    def load(ctx: FetchContext) -> Catalog:
        return catalog_from_files(
            name, inter, raw.get("items"), raw.get("users"),
            mapping=raw.get("mapping", {}), timestamp_format=raw.get("timestamp_format"),
        )  # fmt: skip

    return DatasetSpec(name, f"user data from {inter}", load, cache_key=lambda: _files_key(files))


def builtin_dataset_names() -> set[str]:
    """Names the built-in dataset plugins register (cheap: their hooks only build specs)."""
    names: list[str] = []
    for module in BUILTIN_DATASET_MODULES:
        plugin = importlib.import_module(f"recbench.plugins.datasets.{module}")
        plugin.recbench_register_datasets(lambda spec: names.append(spec.name))
    return set(names)


def check_new_dataset_name(name: str, owner: str) -> None:
    """A local dataset may take no name that another plugin registers: the clash would stop every
    command. ``owner`` is the module whose earlier registration of ``name`` this one replaces."""
    from recbench.manager import load_registry

    if not NAME_PATTERN.match(name):
        raise ConfigError(f"dataset name {name!r}: use lower-case letters, digits, '_', '-' and '.'.")
    datasets = load_registry().datasets
    source = datasets.sources.get(name)
    if source is not None and source != owner:
        where = f" ({datasets.entries[name].description})" if source.endswith(("user_data", "artwork_logs")) else ""
        raise ConfigError(
            f"dataset name {name!r} is already registered by {source!r}{where}; choose another name "
            "(`recbench list datasets` shows the names in use)."
        )


def warn_skipped(path: Path, problem: str) -> None:
    print(f"recbench: warning: {path}: {problem}; skipped it. Fix or delete that file.", file=sys.stderr)


def add_user_dataset(
    name: str,
    interactions: Path,
    items: Path | None = None,
    users: Path | None = None,
    *,
    mapping: dict[str, str] | None = None,
    timestamp_format: str | None = None,
    report: Callable[[str], None] = lambda note: None,
) -> Path:
    """Validate the files, cache their catalog and write the descriptor; returns the descriptor path.

    Adding a name again replaces the earlier descriptor and cached catalog. ``report`` receives
    notes for the user: how many repeated rows were dropped, or that the data are too small for
    the built-in tasks.
    """
    check_new_dataset_name(name, owner=__name__)
    given = {"interactions": interactions, "items": items, "users": users}
    paths = {key: Path(p).expanduser().resolve() for key, p in given.items() if p}
    catalog = catalog_from_files(
        name, paths["interactions"], paths.get("items"), paths.get("users"),
        mapping=mapping, timestamp_format=timestamp_format,
    )  # fmt: skip
    if warning := check_usable(catalog, paths["interactions"]):
        report(warning)
    if dropped := catalog.provenance["source"]["duplicate_rows_dropped"]:
        report(f"dropped {dropped:,} exact repeat(s) of an earlier row of {paths['interactions']}")
    lines = ["# written by `recbench data add`", f"name = {_toml_str(name)}"]
    lines += [f"{key} = {_toml_str(str(path))}" for key, path in paths.items()]
    if timestamp_format:
        lines.append(f"timestamp_format = {_toml_str(timestamp_format)}")
    lines += ["", "[mapping]", *(f"{key} = {_toml_str(col)}" for key, col in sorted((mapping or {}).items()))]
    descriptor = descriptors_dir() / f"{name}.toml"
    descriptor.parent.mkdir(parents=True, exist_ok=True)
    tmp = descriptor.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(descriptor)
    spec = _spec_from_descriptor(descriptor)
    save_to_cache(name, replace(catalog, provenance={**catalog.provenance, "cache_key": spec.cache_key()}))
    return descriptor


def check_usable(catalog: Catalog, path: Path) -> str | None:
    """Refuse a file without interactions; return a warning when no built-in task could hold out a
    single test example from it (runs on it would stop with "no test examples")."""
    if catalog.interactions.empty:
        raise DatasetError(f"{path}: no interactions (a header without data rows?). Add interactions and rerun.")
    per_user = catalog.interactions.groupby("user").size()
    if (per_user >= MIN_USER_INTERACTIONS).any():
        return None
    return (
        f"{path}: {len(catalog.interactions):,} interaction(s) from {catalog.n_users:,} user(s), and no user has "
        f"{MIN_USER_INTERACTIONS} or more; the built-in tasks hold out each user's last interactions, so their runs on "
        f"this dataset will have no test examples. Add interactions (at least {MIN_USER_INTERACTIONS} for some users)."
    )


def _descriptor_specs() -> list[tuple[Path, DatasetSpec]]:
    """``(descriptor, spec)`` per readable descriptor; a broken one is skipped with a warning naming it."""
    folder = descriptors_dir()
    specs = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            specs.append((path, _spec_from_descriptor(path)))
        except ConfigError as exc:
            warn_skipped(path, str(exc).removeprefix(f"{path}: ").split(";")[0])
    return specs


def user_dataset_specs() -> list[DatasetSpec]:
    return [spec for _, spec in _descriptor_specs()]


def user_dataset_names() -> set[str]:
    """Names the readable descriptors register (without warnings: the hook below gives those)."""
    names = set()
    for path in descriptors_dir().glob("*.toml") if descriptors_dir().is_dir() else []:
        try:
            names.add(tomllib.loads(path.read_text())["name"])
        except (OSError, tomllib.TOMLDecodeError, KeyError):
            pass
    return names


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    reserved = builtin_dataset_names()
    for path, spec in _descriptor_specs():
        if spec.name in reserved:
            warn_skipped(path, f"it registers {spec.name!r}, the name of a built-in dataset")
            continue
        register(spec)
