"""Stable content hashes for protocol fingerprints, run ids and caches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_default)


def _default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot hash value of type {type(obj).__name__}: {obj!r}")


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj``, truncated to ``length`` characters."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def hash_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 over the dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --- canonical table hashes: identical across machines, clones and parquet round trips ---------

FIXED_POINT = 10**6  # floats are hashed as integers of millionths: no raw float bytes, no last-bit noise
_NA = "\x00"


def canonical_column(values: Any) -> bytes:
    """One column as canonical bytes: integers and rounded floats as decimal text, strings as UTF-8,
    missing values as NUL; the column's own dtype (int32 or int64, float32 or float64) does not matter."""
    import pandas as pd

    series = pd.Series(values)
    missing = series.isna().to_numpy()
    kind = series.dtype.kind
    if kind == "b" or (kind == "O" and series.dropna().map(type).eq(bool).all() and (~missing).any()):
        text = np.where(series.fillna(False).to_numpy(bool), "1", "0").astype(object)
    elif kind in "iu" or str(series.dtype) in {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}:
        text = series.astype("Int64").astype(str).to_numpy(dtype=object)
    elif kind == "f" or str(series.dtype).startswith("Float"):
        floats = series.astype("float64").to_numpy(np.float64, na_value=np.nan)
        big = np.abs(floats) >= 1e12
        scaled = np.rint(np.where(big | missing, 0.0, floats) * FIXED_POINT).astype(np.int64)
        text = scaled.astype(str).astype(object)
        if big.any():
            text[big] = [f"e{value:.12g}" for value in floats[big]]
    else:
        text = series.map(_canonical_scalar).to_numpy(dtype=object)
    text = np.array(text, dtype=object)  # a writable copy (pandas may hand back a read-only view)
    text[missing] = _NA
    return "\x1f".join(text.tolist()).encode("utf-8")


def _canonical_scalar(value: Any) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return canonical_json([_canonical_scalar(v) for v in value])
    if isinstance(value, (float, np.floating)):
        return str(int(np.rint(float(value) * FIXED_POINT)))
    return str(value)


def hash_tables(tables: dict[str, Any], digest: Any = None) -> Any:
    """Feed every table (by name, then its columns by name, values in row order) into ``digest``."""
    digest = digest or hashlib.sha256()
    for name in sorted(tables):
        frame = tables[name]
        digest.update(f"\x1etable {name} rows {len(frame)}\n".encode())
        for column in sorted(map(str, frame.columns)):
            digest.update(f"\x1dcolumn {column}\n".encode())
            digest.update(canonical_column(frame[column]))
    return digest
