"""Method isolation: a method's ``fit`` and ``predict`` run in a worker process of their own.

The parent (the runner) prepares the split and keeps the test targets, the full catalog and the
engagement logs. The worker is started fresh (``forkserver`` on Linux, else ``spawn``; never a
plain ``fork``, which would copy the parent's memory, targets included) and receives only what a
method may see: the :class:`~recbench.examples.FitData` and one
:class:`~recbench.examples.ExampleSet` batch at a time. Predictions come back through a pipe; the
parent validates and scores them. A method that raises, crashes, hangs past the run's timeout or
runs out of memory ends its worker with a :class:`MethodFailed` error, never the parent.

Inside the worker a file tripwire (a Python audit hook) refuses to open anything under recbench's
split and dataset caches and the results folder. It stops Python-level reads and writes (``open``,
``pickle``, ``pandas``); native code can bypass it, which is why a leaderboard of untrusted code
needs a hidden test set (see CONTRIBUTING's trust model). :class:`InProcessSession` keeps the old
single-process path for debugging (``--in-process``); results record which one ran.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from recbench.errors import RecbenchError, TargetLeakError

WORKER = "worker"
IN_PROCESS = "in-process"
DEFAULT_BATCH_SIZE = 256  # measured faster per user than 1024 on 2 cores, and a quarter of the memory
METHOD_NOTE = "recbench: raised by method"
START_S = 120.0  # the least time a worker gets to start (import the method) when the run has a timeout


def peak_memory_gb() -> float | None:
    """The largest resident memory of this process or any child it waited for (a training job), in GB;
    ``None`` where the platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return round(peak * scale / 2**30, 2)


class MethodFailed(RecbenchError):
    """A method's worker ended without an answer: it crashed, hung past the timeout or ran out of memory."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits on a method's worker. ``None``: no limit."""

    timeout_s: float | None = None  # wall seconds for fit plus every predict (starting the worker: START_S or more)
    max_memory_gb: float | None = None  # address-space limit of the worker (RLIMIT_AS)


def is_method_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came from a method (its own error, or its worker's end), not from recbench."""
    return isinstance(exc, MethodFailed) or any(str(n).startswith(METHOD_NOTE) for n in getattr(exc, "__notes__", ()))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)


# --- the file tripwire ------------------------------------------------------------------------

_FILE_EVENTS = {  # audit event -> positions of its path arguments
    "open": (0,), "os.listdir": (0,), "os.scandir": (0,), "os.remove": (0,), "os.rmdir": (0,),
    "os.truncate": (0,), "os.chmod": (0,), "os.rename": (0, 1), "os.replace": (0, 1), "os.link": (0, 1),
    "os.symlink": (0, 1), "shutil.copyfile": (0, 1), "shutil.copytree": (0, 1), "shutil.move": (0, 1),
}


class _Guard:
    roots: tuple[str, ...] = ()  # protected folders, each ending in os.sep; empty: the tripwire is off
    installed: bool = False
    violations: list[str] = []  # every refused access, kept even when method code catches the error


_GUARD = _Guard()


def _check_paths(event: str, args: tuple) -> None:
    roots = _GUARD.roots
    if not roots or event not in _FILE_EVENTS:
        return
    for position in _FILE_EVENTS[event]:
        if position >= len(args) or isinstance(args[position], int) or args[position] is None:
            continue
        try:
            path = os.path.realpath(os.fsdecode(args[position])) + os.sep
        except (TypeError, ValueError):
            continue
        if path.startswith(roots):
            _GUARD.violations.append(f"{event} {os.fsdecode(args[position])}")
            raise PermissionError(
                f"recbench: method code may not access {os.fsdecode(args[position])!r} ({event}): recbench's split "
                "caches, dataset caches and results hold test targets. Learn only from the FitData and ExampleSet "
                "the runner passes (CONTRIBUTING, 'Rules for methods')."
            )


@contextmanager
def file_guard(roots: Iterable[os.PathLike | str]):
    """While active, Python-level access to anything under ``roots`` raises PermissionError."""
    if not _GUARD.installed:
        sys.addaudithook(_check_paths)
        _GUARD.installed = True
    previous = _GUARD.roots
    _GUARD.roots = tuple(os.path.realpath(os.fspath(r)) + os.sep for r in roots)
    try:
        yield
    finally:
        _GUARD.roots = previous


def check_violations(method: str, violations: list[str]) -> None:
    """A method that tried to open a protected file voids its run, even if it caught the refusal."""
    if violations:
        shown = "; ".join(violations[:3]) + (f" and {len(violations) - 3} more" if len(violations) > 3 else "")
        raise TargetLeakError(
            f"method {method!r} tried to access recbench's caches or results ({shown}). Methods may learn only from "
            "the FitData and ExampleSet they are given; the run is void and no result was written."
        )


# --- sessions: where a method's code runs -------------------------------------------------------


class InProcessSession:
    """The method in the runner's own process (``--in-process``): for debugging, not isolated."""

    mode = IN_PROCESS

    def __init__(self, method_cls: type, config: Any, seed: int, protected: Iterable[Any] = (), limits: Limits = Limits()) -> None:
        self.name, self.protected = method_cls.name, tuple(protected)
        self._seen = len(_GUARD.violations)
        self.on_progress: Callable | None = None  # receives recbench.progress.StageEvent, in this process
        seed_everything(seed)
        self.method = method_cls(config, seed=seed)

    def _call(self, phase: str, fn: Callable, *args: Any) -> Any:
        from recbench import progress

        try:
            with file_guard(self.protected), progress.reporting(self.on_progress):
                return fn(*args)
        except Exception as exc:
            exc.add_note(f"{METHOD_NOTE} {self.name!r} in {phase}()")
            raise

    def ready(self) -> None:
        pass

    def fit(self, data: Any) -> None:
        self._call("fit", self.method.fit, data)

    def batch_size(self) -> int:
        return int(getattr(self.method, "predict_batch_size", DEFAULT_BATCH_SIZE))

    def stages(self, summary: Any) -> tuple[dict[str, Any], list[Any]]:
        return self._call("stages", lambda: (self.method.plan_settings(), self.method.stages(summary)))

    def predict(self, batch: Any, contract: Any) -> Any:
        return self._call("predict", self.method.predict, batch, contract)

    def describe(self) -> dict[str, Any]:
        fitted = self._call("describe", self.method.describe)
        check_violations(self.name, _GUARD.violations[self._seen :])
        return fitted

    def peak_memory_gb(self) -> float | None:
        """The runner's own peak (the method shares its process)."""
        return peak_memory_gb()

    def close(self) -> None:
        pass


class WorkerSession:
    """The method in a fresh worker process; the same calls as :class:`InProcessSession`."""

    mode = WORKER

    def __init__(self, method_cls: type, config: Any, seed: int, protected: Iterable[Any] = (), limits: Limits = Limits()) -> None:
        self.name, self.limits = method_cls.name, limits
        self.on_progress: Callable | None = None  # receives the worker's recbench.progress.StageEvent reports
        try:
            # the caller's environment and folder now, not the fork server's from when it started
            torch = sys.modules.get("torch")  # the worker computes with the caller's thread count
            threads = torch.get_num_threads() if torch is not None else None
            payload = pickle.dumps((method_cls, config, seed, dict(os.environ), os.getcwd(), threads),
                                   protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise RecbenchError(
                f"method {self.name!r} cannot be sent to a worker process: {exc}. Define the method class and its "
                "Config at module level of an importable module, or debug it with --in-process."
            ) from exc
        context = _context()
        self.conn, child = context.Pipe()
        memory = int(limits.max_memory_gb * 2**30) if limits.max_memory_gb else None
        roots = tuple(os.fspath(r) for r in protected)
        self.process = context.Process(target=_worker_main, args=(child, roots, memory, os.getpid()),
                                       name=f"recbench-{self.name}", daemon=True)
        # starting the worker (imports, torch among them) gets its own window, never less than START_S
        self.deadline = time.monotonic() + max(limits.timeout_s, START_S) if limits.timeout_s else None
        self._batch_size: int | None = None
        self._started, self._start_error = False, None
        # started beside the caller: the worker boots while the parent loads the split; ready() joins it
        self._starter = threading.Thread(target=self._start, args=(child, payload), daemon=True)
        self._starter.start()

    def _start(self, child: Any, payload: bytes) -> None:
        try:
            self.process.start()
            child.close()
            self.conn.send(("init", payload))
        except BaseException as exc:  # noqa: BLE001 - re-raised by ready() in the caller's thread
            self._start_error = exc

    def ready(self) -> None:
        """Wait until the worker has imported the method (not counted as fit time)."""
        if not self._started:
            self._starter.join()
            if self._start_error is not None:
                raise self._start_error
            self._batch_size, self._started = self._receive("start"), True
            if self.limits.timeout_s:  # the method's own clock starts at fit
                self.deadline = time.monotonic() + self.limits.timeout_s

    def fit(self, data: Any) -> None:
        self.ready()
        self._ask("fit", "fit", data)

    def batch_size(self) -> int:
        return int(self._batch_size or DEFAULT_BATCH_SIZE)

    def stages(self, summary: Any) -> tuple[dict[str, Any], list[Any]]:
        """The method's plan settings and stages (:meth:`recbench.method.Method.stages`), from the worker."""
        self.ready()
        return self._ask("stages", "stages", summary)

    def predict(self, batch: Any, contract: Any) -> Any:
        return self._ask("predict", "predict", (batch, contract))

    def describe(self) -> dict[str, Any]:
        fitted, violations, self._peak = self._ask("describe", "describe", None)
        check_violations(self.name, violations)
        return fitted

    def peak_memory_gb(self) -> float | None:
        """The worker's peak resident memory up to :meth:`describe` (after fit and predict)."""
        return getattr(self, "_peak", None)

    def close(self) -> None:
        self._starter.join()
        if self.process.is_alive():
            try:
                self.conn.send(("close", None))
                self.process.join(timeout=5)
            except (OSError, EOFError, BrokenPipeError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()

    def _ask(self, phase: str, op: str, payload: Any) -> Any:
        try:
            self.conn.send((op, payload))
        except (BrokenPipeError, ConnectionResetError):
            raise self._died(phase) from None
        return self._receive(phase)

    def _receive(self, phase: str) -> Any:
        while True:
            remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            if not self.conn.poll(remaining):
                self._stop()
                raise MethodFailed(
                    f"method {self.name!r} did not finish {phase}() within the run's {self.limits.timeout_s:g} s timeout; "
                    "its worker was stopped. Raise --timeout, or make the method faster (e.g. a smaller preset)."
                )
            try:
                status, value = self.conn.recv()
            except (EOFError, OSError):
                raise self._died(phase) from None
            if status != "progress":
                break
            if self.on_progress is not None:  # a stage report of the method's while it works; the answer follows
                self.on_progress(value)
        if status == "ok":
            return value
        exc, trace = value
        if isinstance(exc, MemoryError):
            raise MethodFailed(
                f"method {self.name!r} ran out of memory in {phase}() (worker limit {self.limits.max_memory_gb} GB, "
                "--max-memory-gb); its worker was stopped. Lower the method's memory use or raise the limit."
            ) from exc
        exc.add_note(f"{METHOD_NOTE} {self.name!r} in {phase}() in its worker process")
        exc.add_note(f"worker traceback:\n{trace}")
        raise exc

    def _stop(self) -> None:
        self.process.kill()
        self.process.join()

    def _died(self, phase: str) -> MethodFailed:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            why = f"was killed by {name}" + (
                " (usually the out-of-memory killer: lower the method's memory use, or set --max-memory-gb so it "
                "fails with a clear error first)" if -code == signal.SIGKILL else "")
        else:
            why = f"exited with code {code}"
        return MethodFailed(f"the worker process running method {self.name!r} {why} during {phase}(); no result was written.")


def start_method() -> str:
    """``forkserver`` where available (workers start from a clean, preloaded server), else ``spawn``."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _context() -> Any:
    context = multiprocessing.get_context(start_method())
    if start_method() == "forkserver":  # the server imports these once; each worker is a fork of it
        context.set_forkserver_preload(["recbench.worker", "recbench.examples", "recbench.contracts"])
    return context


def watch_parent(pid: int, every_s: float = 1.0) -> threading.Thread:
    """End this process when process ``pid`` is gone (a killed runner must not leave its worker training).

    A worker is a child of the fork server, not of the runner, so no signal reaches it when the
    runner is killed with SIGKILL; this daemon thread polls the runner and exits at once.
    """

    def watch() -> None:
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone, or its pid reused by someone else's process
                os._exit(70)

    thread = threading.Thread(target=watch, name="recbench-parent-watch", daemon=True)
    thread.start()
    return thread


def _worker_main(conn: Any, protected: tuple[str, ...], memory: int | None, parent: int | None = None) -> None:
    if parent is not None:
        watch_parent(parent)
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    method = None
    from recbench import progress

    sending = threading.Lock()  # a method's pool threads may report too

    def report(event: Any) -> None:
        with sending:
            conn.send(("progress", event))

    progress.set_reporter(report)  # the parent shows the method's stage reports as bars
    with file_guard(protected):
        while True:
            try:
                op, payload = conn.recv()
            except (EOFError, OSError):
                return
            if op == "close":
                return
            try:
                if op == "init":
                    method_cls, config, seed, environ, cwd, threads = pickle.loads(payload)
                    os.environ.clear()
                    os.environ.update(environ)
                    os.chdir(cwd)
                    if threads:
                        import torch

                        torch.set_num_threads(threads)
                    seed_everything(seed)
                    method = method_cls(config, seed=seed)
                    reply = getattr(method, "predict_batch_size", None)
                elif op == "fit":
                    reply = method.fit(payload)
                elif op == "predict":
                    reply = method.predict(*payload)
                elif op == "stages":
                    reply = (method.plan_settings(), method.stages(payload))
                else:
                    reply = (method.describe(), list(_GUARD.violations), peak_memory_gb())
                conn.send(("ok", reply))
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
                _send_error(conn, exc, traceback.format_exc())


def _send_error(conn: Any, exc: BaseException, trace: str) -> None:
    try:
        conn.send(("error", (exc, trace)))
    except Exception:  # an exception that does not pickle goes back as its text
        conn.send(("error", (RuntimeError(f"{type(exc).__name__}: {exc}"), trace)))


SESSIONS = {WORKER: WorkerSession, IN_PROCESS: InProcessSession}
