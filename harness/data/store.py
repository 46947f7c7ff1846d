"""Where datasets live on disk, how a dataset is declared, and the explicit filters tasks apply.

``get_catalog`` reads ``recbench_home()/datasets/<name>/`` (a :meth:`Catalog.save` folder) and
otherwise calls the dataset's loader, whose downloads go to ``recbench_home()/downloads/<name>/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench.data.catalog import Catalog
from recbench.errors import ConfigError, DatasetError

HOME_ENV = "RECBENCH_HOME"


def recbench_home() -> Path:
    """``$RECBENCH_HOME``, else ``$XDG_CACHE_HOME/recbench``, else ``~/.cache/recbench``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "recbench"


def downloads_dir(name: str) -> Path:
    return recbench_home() / "downloads" / name


def cached_catalog_dir(name: str) -> Path:
    return recbench_home() / "datasets" / name


@dataclass(frozen=True)
class FetchContext:
    """What a loader gets: its own download folder and a way to report progress."""

    cache_dir: Path
    quiet: bool = True

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: ``loader(ctx)`` builds its :class:`Catalog` from scratch.

    ``cache_key``, when given, is a cheap fingerprint of the inputs (for example file sizes and
    modification times); a cached copy recorded under another key is rebuilt. ``info``, when
    given, adds dataset-specific statistics to ``recbench data info`` (e.g. the artwork datasets'
    option counts and simulator ceiling).
    """

    name: str
    description: str
    loader: Callable[[FetchContext], Catalog]
    homepage: str | None = None
    license: str | None = None
    cache_key: Callable[[], str] | None = None
    info: Callable[[Catalog], dict[str, Any]] | None = None


def get_catalog(spec: DatasetSpec, *, refresh: bool = False, quiet: bool = True) -> Catalog:
    """The dataset's catalog: the local cached copy if complete and current, else built and cached."""
    folder = cached_catalog_dir(spec.name)
    ctx = FetchContext(downloads_dir(spec.name), quiet)
    key = spec.cache_key() if spec.cache_key else None
    if not refresh:
        cached = _load_cached(folder, ctx)
        if cached is not None and cached.provenance.get("cache_key") == key:
            return cached
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    ctx.log(f"building dataset {spec.name!r} (downloads in {ctx.cache_dir})")
    catalog = spec.loader(ctx)
    if not isinstance(catalog, Catalog):
        raise DatasetError(
            f"the loader of dataset {spec.name!r} returned {type(catalog).__name__}, not a Catalog; "
            "fix the plugin that registered it."
        )
    if key is not None:
        catalog = _with_provenance(catalog, cache_key=key)
    save_to_cache(spec.name, catalog)
    ctx.log(f"cached {spec.name!r} in {folder}")
    return catalog


def save_to_cache(name: str, catalog: Catalog) -> Path:
    """Write ``catalog`` as the cached copy of ``name``; readers never see a half-written folder."""
    folder = cached_catalog_dir(name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder.parent / f".{name}.tmp-{tag}"
    catalog.save(tmp)
    old = folder.parent / f".{name}.old-{tag}"
    try:
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
    except OSError:
        # another process put its copy in place between our two renames; theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def _load_cached(folder: Path, ctx: FetchContext) -> Catalog | None:
    if not (folder / "catalog.json").is_file():
        return None
    try:
        return Catalog.load(folder)
    except Exception as exc:  # any unreadable or altered part: report it and rebuild, never use it
        print(f"recbench: warning: ignoring the cached dataset {folder}: {exc}; rebuilding it.", file=sys.stderr)
        return None


def _with_provenance(catalog: Catalog, **entries: Any) -> Catalog:
    return replace(catalog, provenance={**catalog.provenance, **entries})


# --- explicit filters ------------------------------------------------------------------------


def _min_rating(catalog: Catalog, threshold: float) -> pd.DataFrame:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ConfigError(f"filter min_rating: threshold must be a number; got {threshold!r}.")
    inter = catalog.interactions
    if not inter["rating"].notna().any():
        raise ConfigError(
            f"filter min_rating: dataset {catalog.name!r} has no explicit ratings; remove the filter."
        )
    return inter[inter["rating"].to_numpy() >= float(threshold)]


def _k_core(catalog: Catalog, k: int) -> pd.DataFrame:
    inter = catalog.interactions
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"filter k_core: k must be a positive integer; got {k!r}.")
    while True:  # dropping a user can push an item under k and back: repeat until nothing changes
        users = inter["user"].to_numpy()
        items = inter["item"].to_numpy()
        user_counts = np.bincount(users, minlength=catalog.n_users)
        item_counts = np.bincount(items, minlength=catalog.n_items)
        keep = (user_counts[users] >= k) & (item_counts[items] >= k)
        if keep.all():
            return inter
        inter = inter[keep]


FILTERS: dict[str, tuple[Callable[..., pd.DataFrame], tuple[str, ...]]] = {
    "min_rating": (_min_rating, ("threshold",)),
    "k_core": (_k_core, ("k",)),
}


def apply_filters(catalog: Catalog, filters: list[dict[str, Any]]) -> Catalog:
    """Apply task-spec filters in order; each records what it removed in the provenance.

    User and item codes are kept: a filter only removes interaction rows.
    """
    for spec in filters:
        name = spec.get("name") if isinstance(spec, dict) else None
        if name not in FILTERS:
            raise ConfigError(
                f"unknown dataset filter {name!r} in {spec!r}. Valid filters: "
                + ", ".join(f"{n}({', '.join(params)})" for n, (_, params) in FILTERS.items())
                + "."
            )
        function, params = FILTERS[name]
        given = {k: v for k, v in spec.items() if k != "name"}
        if set(given) != set(params):
            raise ConfigError(
                f"filter {name!r} takes exactly {list(params)}; got {sorted(given)} in {spec!r}."
            )
        before = catalog.interactions
        after = function(catalog, **given).reset_index(drop=True)
        removed = {
            "interactions": int(len(before) - len(after)),
            "users": int(before["user"].nunique() - after["user"].nunique()),
            "items": int(before["item"].nunique() - after["item"].nunique()),
        }
        catalog = catalog.with_interactions(after, {**spec, "removed": removed})
    return catalog
