"""The canonical catalog every dataset is turned into, and its validation.

A :class:`Catalog` has three tables:

- ``interactions``: ``user`` and ``item`` (contiguous int32 codes), ``timestamp`` (int64 Unix
  seconds), ``rating`` (float32, NaN for implicit feedback), sorted by the tie rule below.
- ``items``: one row per item code (the index), columns ``item_id`` (original id, string),
  ``title``, ``year`` (nullable Int64), ``genres`` ("|"-joined), ``text``.
- ``users``: one row per user code (the index), column ``user_id`` (original id, string) plus any
  demographics the source has (``age``, ``gender``, ``occupation``, ``zip_code``...).

Tie rule (part of every protocol fingerprint): interactions are ordered per user by timestamp,
then by a fixed 64-bit hash of ``(user code, item code)``. MovieLens-100K has equal timestamps
for the last two interactions of 44% of its users. A tie order independent of the source file's
row order makes the cached copy, the GroupLens download and the registry-wheel copy give
identical splits; a hashed order (rather than by item code, which correlates with popularity)
keeps the test and validation targets of tied pairs exchangeable, so validation does not
systematically favour popularity-leaning models.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbench.errors import DatasetError
from recbench.examples import CatalogView
from recbench.hashing import hash_tables

TIE_RULE = "timestamp,splitmix64(user_code,item_code)"
CONTENT_HASH_FORM = "recbench.catalog/2: interactions by ids, items, users, side tables; canonical text"
INTERACTION_COLUMNS = ("user", "item", "timestamp", "rating")


@dataclass(frozen=True)
class Catalog:
    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    provenance: dict[str, Any] = field(default_factory=dict)
    # side tables some tasks need, e.g. ``artworks`` (one row per artwork code) and ``artwork_log``
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    _hash: str | None = field(default=None, init=False, repr=False, compare=False)  # content_hash(), once

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def content_hash(self) -> str:
        """SHA-256 (16 hex) of everything a method or metric can read: the interactions by original
        ids, the items and users tables in code order, and every side table, each in the canonical
        form of :func:`recbench.hashing.hash_tables` (decimal text, floats in millionths), so the
        same data gives the same hash on any machine, from any source, after any parquet round trip."""
        if self._hash is None:
            inter = self.interactions
            ids = pd.DataFrame({
                "user_id": self.users["user_id"].to_numpy(dtype=object)[inter["user"].to_numpy()],
                "item_id": self.items["item_id"].to_numpy(dtype=object)[inter["item"].to_numpy()],
                "timestamp": inter["timestamp"].to_numpy(np.int64),
                "rating": inter["rating"].to_numpy(np.float64),
            })
            tables = {"interactions": ids, "items": self.items, "users": self.users}
            tables.update({f"table-{name}": frame for name, frame in self.tables.items()})
            digest = hash_tables(tables, hashlib.sha256(f"{CONTENT_HASH_FORM}\n".encode()))
            object.__setattr__(self, "_hash", digest.hexdigest()[:16])
        return self._hash

    def with_tie_seed(self, tie_seed: int) -> Catalog:
        """A copy whose equal timestamps are ordered by :func:`tie_key` under ``tie_seed``."""
        if not tie_seed:
            return self
        return replace(self, interactions=sort_interactions(self.interactions, tie_seed))

    def view(self) -> CatalogView:
        return CatalogView(self.name, self.items, self.users, dict(self.tables))

    def with_interactions(self, interactions: pd.DataFrame, step: dict[str, Any]) -> Catalog:
        """A copy with new interactions and ``step`` appended to the recorded filters."""
        provenance = dict(self.provenance)
        provenance["filters"] = [*self.provenance.get("filters", []), step]
        return replace(self, interactions=interactions, provenance=provenance)

    def summary(self) -> dict[str, Any]:
        inter = self.interactions
        ts = inter["timestamp"]
        n_users_active = inter["user"].nunique()
        n_items_active = inter["item"].nunique()
        density = len(inter) / max(1, self.n_users * self.n_items)
        return {
            "name": self.name,
            "interactions": len(inter),
            "users": self.n_users,
            "items": self.n_items,
            "active_users": int(n_users_active),
            "active_items": int(n_items_active),
            "sparsity": round(1.0 - density, 6),
            "date_range": [_iso(ts.min()), _iso(ts.max())] if len(ts) else None,
            "explicit_ratings": bool(inter["rating"].notna().any()),
            "content_hash": self.content_hash(),
            "source": self.provenance.get("source"),
            "filters": self.provenance.get("filters", []),
        }

    # --- persistence -------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Parquet per table, then ``catalog.json`` with each file's SHA-256 (checked by :meth:`load`)."""
        folder.mkdir(parents=True, exist_ok=True)
        frames = {"interactions": self.interactions, "items": self.items, "users": self.users}
        frames.update({f"table-{name}": frame for name, frame in self.tables.items()})
        hashes = {}
        for stem, frame in frames.items():
            tmp = folder / f"{stem}.parquet.tmp"
            frame.to_parquet(tmp)
            hashes[f"{stem}.parquet"] = hashlib.sha256(tmp.read_bytes()).hexdigest()
            tmp.replace(folder / f"{stem}.parquet")
        tmp = folder / "catalog.json.tmp"
        meta = {"name": self.name, "provenance": self.provenance, "tables": sorted(self.tables), "tie_rule": TIE_RULE,
                "files": hashes, "content_hash": {"form": CONTENT_HASH_FORM, "value": self.content_hash()}}
        tmp.write_text(json.dumps(meta, indent=2, default=str))
        tmp.replace(folder / "catalog.json")  # written last: its presence marks a complete copy

    @classmethod
    def load(cls, folder: Path) -> Catalog:
        """Read a :meth:`save` folder; a file whose SHA-256 differs from the recorded one is an error."""
        meta = json.loads((folder / "catalog.json").read_text())
        recorded = meta.get("files")
        if not isinstance(recorded, dict):
            raise DatasetError(f"cached catalog {folder} records no file hashes (written by an older recbench)")
        stems = ["interactions", "items", "users", *(f"table-{name}" for name in meta.get("tables", []))]
        blobs = {}
        for stem in stems:
            blob = (folder / f"{stem}.parquet").read_bytes()
            if hashlib.sha256(blob).hexdigest() != recorded.get(f"{stem}.parquet"):
                raise DatasetError(f"cached catalog file {folder / (stem + '.parquet')} does not match its recorded "
                                   "SHA-256 (tampered or truncated)")
            blobs[stem] = pd.read_parquet(io.BytesIO(blob))
        frames = {t: blobs[t] for t in ("interactions", "items", "users")}
        tables = {name: blobs[f"table-{name}"] for name in meta.get("tables", [])}
        if meta.get("tie_rule") != TIE_RULE:  # cached under another tie rule: reorder, never trust the old order
            frames["interactions"] = sort_interactions(frames["interactions"])
        catalog = cls(meta["name"], provenance=meta["provenance"], tables=tables, **frames)
        recorded_hash = meta.get("content_hash") or {}
        if recorded_hash.get("form") == CONTENT_HASH_FORM and meta.get("tie_rule") == TIE_RULE:
            # the files' SHA-256s just matched, so the hash recorded beside them is theirs: no recomputation
            object.__setattr__(catalog, "_hash", recorded_hash["value"])
        return catalog


def _iso(ts: Any) -> str:
    return pd.Timestamp(int(ts), unit="s").strftime("%Y-%m-%d")


def build_catalog(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    *,
    source: dict[str, Any],
    file_names: dict[str, str] | None = None,
) -> Catalog:
    """Validate raw tables keyed by original ids and encode them into a :class:`Catalog`.

    ``interactions`` needs ``user_id, item_id, timestamp`` and optionally ``rating``; ``items``
    needs ``item_id`` and optionally ``title, year, genres, text``; ``users`` needs ``user_id``.
    Row numbers in errors are 1-based data rows of the named file (header excluded). Nothing
    is dropped: any bad row is an error.
    """
    files = {"interactions": "interactions", "items": "items", "users": "users", **(file_names or {})}
    interactions = interactions.reset_index(drop=True)
    _require(interactions, ("user_id", "item_id", "timestamp"), files["interactions"])
    _require(items, ("item_id",), files["items"])

    inter = pd.DataFrame(
        {
            "user_id": interactions["user_id"].astype(str),
            "item_id": interactions["item_id"].astype(str),
            "timestamp": _numeric(interactions["timestamp"], "timestamp", files["interactions"], integer=True),
            "rating": (
                _numeric(interactions["rating"], "rating", files["interactions"])
                if "rating" in interactions
                else pd.Series(np.nan, index=interactions.index)
            ),
        }
    )
    _check_missing(interactions[["user_id", "item_id"]], files["interactions"])

    items = items.reset_index(drop=True).copy()
    items["item_id"] = items["item_id"].astype(str)
    _check_duplicates(items, "item_id", files["items"])
    _check_known(inter, items, "item_id", files["interactions"], files["items"])
    if users is None:
        users = pd.DataFrame({"user_id": pd.unique(inter["user_id"])})
    users = users.reset_index(drop=True).copy()
    _require(users, ("user_id",), files["users"])
    users["user_id"] = users["user_id"].astype(str)
    _check_duplicates(users, "user_id", files["users"])
    _check_known(inter, users, "user_id", files["interactions"], files["users"])

    for column, default in (("title", ""), ("genres", ""), ("text", "")):
        if column not in items:
            items[column] = default
        items[column] = items[column].fillna("").astype(str)
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int64") if "year" in items else pd.array(
        [pd.NA] * len(items), dtype="Int64"
    )
    items = items[["item_id", "title", "year", "genres", "text", *[c for c in items if c not in {"item_id", "title", "year", "genres", "text"}]]]

    item_code = pd.Series(np.arange(len(items), dtype=np.int32), index=items["item_id"])
    user_code = pd.Series(np.arange(len(users), dtype=np.int32), index=users["user_id"])
    encoded = pd.DataFrame(
        {
            "user": user_code.loc[inter["user_id"]].to_numpy(np.int32),
            "item": item_code.loc[inter["item_id"]].to_numpy(np.int32),
            "timestamp": inter["timestamp"].to_numpy(np.int64),
            "rating": inter["rating"].to_numpy(np.float32),
        }
    )
    encoded = sort_interactions(encoded)
    return Catalog(name, encoded, items, users, provenance={"source": source, "filters": []})


def tie_key(users: np.ndarray, items: np.ndarray, tie_seed: int = 0) -> np.ndarray:
    """splitmix64 of ``user << 32 | item``: a fixed pseudo-random order of equal timestamps.

    ``tie_seed`` 0 is the protocol's rule; another seed XORs a splitmix64 of the seed into the
    input, giving another, equally fixed, order (for measuring how much ties move a metric)."""
    x = (np.asarray(users, np.uint64) << np.uint64(32)) | np.asarray(items, np.uint64)
    if tie_seed:
        x = x ^ tie_key(np.zeros(1, np.uint64), np.asarray([tie_seed], np.uint64))[0]
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sort_interactions(frame: pd.DataFrame, tie_seed: int = 0) -> pd.DataFrame:
    """Order by user, timestamp, then :func:`tie_key`; deterministic for any input row order."""
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    order = np.lexsort((tie_key(users, items, tie_seed), frame["timestamp"].to_numpy(), users))
    return frame.iloc[order].reset_index(drop=True)


def _rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r) + 1) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return shown + more


def _require(frame: pd.DataFrame, columns: tuple[str, ...], file: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{file}: missing column(s) {missing}; found {list(frame.columns)}. "
            "Map your columns to recbench's names (see `recbench data --help`)."
        )


def _numeric(series: pd.Series, column: str, file: str, *, integer: bool = False) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & ~(series.isna() & (column == "rating"))
    if column == "timestamp":
        bad |= values.isna()
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        raise DatasetError(
            f"{file}: column {column!r} has non-numeric values at rows {_rows(rows)} "
            f"(first: {series.iloc[rows[0]]!r}). Fix or remove those rows."
        )
    if not np.isfinite(values.dropna().to_numpy(dtype=float)).all():
        rows = np.flatnonzero(~np.isfinite(values.to_numpy(dtype=float)) & values.notna().to_numpy())
        raise DatasetError(f"{file}: column {column!r} has infinite values at rows {_rows(rows)}.")
    if integer:
        frac = values.to_numpy(dtype=float) % 1 != 0
        if frac.any():
            rows = np.flatnonzero(frac)
            raise DatasetError(
                f"{file}: column {column!r} must hold whole Unix seconds; rows {_rows(rows)} do not "
                f"(first: {series.iloc[rows[0]]!r})."
            )
        return values.astype(np.int64)
    return values.astype(float)


def _check_missing(frame: pd.DataFrame, file: str) -> None:
    for column in frame.columns:
        missing = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if missing.any():
            rows = np.flatnonzero(missing.to_numpy())
            raise DatasetError(f"{file}: column {column!r} is empty at rows {_rows(rows)}.")


def _check_known(inter: pd.DataFrame, table: pd.DataFrame, column: str, file: str, table_file: str) -> None:
    unknown = ~inter[column].isin(table[column])
    if unknown.any():
        rows = np.flatnonzero(unknown.to_numpy())
        raise DatasetError(
            f"{file}: rows {_rows(rows)} name {column.split('_')[0]} ids missing from {table_file} "
            f"(first: {inter[column].iloc[rows[0]]!r}). Add them to {table_file} or remove those rows explicitly."
        )


def _check_duplicates(frame: pd.DataFrame, column: str, file: str) -> None:
    dup = frame[column].duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        raise DatasetError(
            f"{file}: {column} values repeat at rows {_rows(rows)} (first: {frame[column].iloc[rows[0]]!r}); "
            "each id must appear once."
        )
