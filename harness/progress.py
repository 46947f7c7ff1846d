"""Stage progress: what a method reports while it works, drawn by the runner as one bar per stage.

A method opens a stage and advances it as work completes::

    from recbench import progress

    with progress.stage("teacher generation", total=len(prompts), unit="ex"):
        for prompt in prompts:
            ...
            progress.advance()

The LLM toolkit's backends advance the open stage by each batch of prompts they answer, so a
method that generates inside a stage needs nothing more. Outside every stage ``advance`` does
nothing: the runner counts test batches itself. Events go to the reporter the method's session
installs: inside a worker process, a message to the runner over the session's pipe; with
``--in-process``, the runner's handler directly. With no reporter (a method used as a library)
nothing is sent. Names should match the stages the method plans (:meth:`Method.stages`), so the
runner can number the bars and measure each stage's cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

UPDATE_EVERY_S = 0.5  # progress messages are throttled; a stage's start and end always go


@dataclass(frozen=True)
class StageEvent:
    """One report about a stage: ``state`` is ``start``, ``update`` or ``end``."""

    name: str
    done: int
    total: int
    unit: str
    state: str
    note: str = ""  # e.g. "reused": the stage's result came from a cache, so its time is no measurement


class _Open:
    def __init__(self, name: str, total: int, unit: str, sink: bool = False) -> None:
        self.name, self.total, self.unit, self.sink = name, int(total), unit, sink
        self.done, self.note, self.sent_at = 0, "", 0.0


class _State:
    reporter: Callable[[StageEvent], None] | None = None
    stack: list[_Open] = []
    lock = threading.Lock()


_STATE = _State()


def _send(current: _Open, state: str) -> None:
    reporter = _STATE.reporter
    if reporter is None or current.sink:
        return
    current.sent_at = time.monotonic()
    reporter(StageEvent(current.name, current.done, current.total, current.unit, state, current.note))


@contextmanager
def stage(name: str, total: int, unit: str = "ex") -> Iterator[_Open]:
    """A stage of ``total`` units; ``advance`` inside it counts towards it."""
    current = _Open(name, total, unit)
    with _STATE.lock:
        _STATE.stack.append(current)
    _send(current, "start")
    try:
        yield current
    finally:
        with _STATE.lock:
            _STATE.stack.remove(current)
        _send(current, "end")


@contextmanager
def hidden() -> Iterator[None]:
    """Advances inside this block are not counted (a stage that counts its own units, not each call)."""
    sink = _Open("", 0, "", sink=True)
    with _STATE.lock:
        _STATE.stack.append(sink)
    try:
        yield
    finally:
        with _STATE.lock:
            _STATE.stack.remove(sink)


def advance(n: int = 1) -> None:
    """Count ``n`` more units done in the innermost open stage (nothing outside every stage)."""
    with _STATE.lock:
        if not _STATE.stack:
            return
        current = _STATE.stack[-1]
        current.done += int(n)
    if time.monotonic() - current.sent_at >= UPDATE_EVERY_S or current.done >= current.total:
        _send(current, "update")


def set_total(total: int) -> None:
    """Correct the innermost stage's total once it is known (e.g. a trainer's number of steps)."""
    with _STATE.lock:
        if _STATE.stack and not _STATE.stack[-1].sink:
            _STATE.stack[-1].total = int(total)
            current = _STATE.stack[-1]
        else:
            return
    _send(current, "update")


def mark(note: str) -> None:
    """Attach a note to the innermost stage, sent with its next event (``reused``: no work was done)."""
    with _STATE.lock:
        if _STATE.stack:
            _STATE.stack[-1].note = note


@contextmanager
def reporting(reporter: Callable[[StageEvent], None] | None) -> Iterator[None]:
    """Send every stage event inside this block to ``reporter``."""
    previous = _STATE.reporter
    _STATE.reporter = reporter
    try:
        yield
    finally:
        _STATE.reporter = previous


def set_reporter(reporter: Callable[[StageEvent], None] | None) -> None:
    """Send every later stage event to ``reporter`` (a worker process installs its pipe once)."""
    _STATE.reporter = reporter
