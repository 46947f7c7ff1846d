"""Reasoning distillation (the artwork paper, section 4.2): a teacher justifies the known answer.

For each training example the teacher is first shown the prompt and the artwork the user engaged
with and asked why it suits the user; then, given only the prompt and its own justification, it
predicts the best artwork. Examples whose prediction is not the engaged artwork are dropped (the
paper reports under 2% with QwQ-32B; a small local teacher drops many more, and the run records
the rate). The kept justifications become the student's target ``Reason: ... Prediction: ...``.

The teacher is any backend of the toolkit (a local model, or a large one behind an
OpenAI-compatible server). Its answers are kept in a :class:`TeacherLog`, an append-only file with
one line per example written as soon as that example's two answers exist, keyed by the teacher's
fingerprint and the prompts' content: an interrupted run's rerun, and every student run that asks
the same questions, start from the answers already made. Justifications are generated a batch at a
time (``chunk`` prompts), so an interrupt loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recbench import progress
from recbench.llm.backend import Backend, DecodingParams
from recbench.llm.parsing import choose_by_ngrams
from recbench.llm.prompts import PARAGRAPH, PREDICTION, REASON_PREFIX, TEXT_PREFIX, BuiltPrompt


@dataclass(frozen=True)
class Reasoned:
    reason: str
    predicted: int | None  # option index the teacher chose after its justification
    kept: bool

    def completion(self, prompt: BuiltPrompt, answer: int) -> str:
        """The student's target: the justification, then the engaged option in the paper's format."""
        return f"{REASON_PREFIX} {self.reason}\n{TEXT_PREFIX}{prompt.continuations[answer]}"


def justification_prompt(prompt: BuiltPrompt, answer: int) -> list[dict[str, str]]:
    """``prompt`` (a reasoning prompt) plus the engaged artwork and the request to explain it."""
    messages = [dict(m) for m in prompt.messages]
    messages[-1]["content"] += (
        f"\n\nThe user chose this option: <option> {prompt.options[answer]} </option>\n"
        "Explain in two or three sentences why this option suits this user, based on their history. "
        "Write only the explanation."
    )
    return messages


class TeacherLog:
    """A teacher's answers, one JSON line per example, appended (and synced) as each is made.

    ``path`` None keeps them in memory only. A line cut short by an interrupt is ignored on reading.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.answers: dict[str, tuple[str, str]] = {}
        self.torn = False  # the file ends inside a line: the next answer starts a new one
        if self.path is not None and self.path.is_file():
            text = self.path.read_text(encoding="utf-8")
            self.torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    self.answers[entry["key"]] = (entry["reason"], entry["said"])
                except (ValueError, KeyError, TypeError):
                    continue

    @classmethod
    def for_teacher(cls, fingerprint: str) -> TeacherLog:
        """The log of this teacher under ``$RECBENCH_HOME/teacher``."""
        from recbench.data.store import recbench_home

        name = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:20]
        return cls(recbench_home() / "teacher" / f"{name}.jsonl")

    def __contains__(self, key: str) -> bool:
        return key in self.answers

    def add(self, key: str, reason: str, said: str) -> None:
        self.answers[key] = (reason, said)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = ("\n" if self.torn else "") + json.dumps({"key": key, "reason": reason, "said": said}, ensure_ascii=False) + "\n"
        self.torn = False
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def answer_key(fingerprint: str, prompt: BuiltPrompt, answer: int, max_new_tokens: int, seed: int) -> str:
    """What one example's teacher answers depend on: the teacher, both prompts' content, the decoding."""
    parts = [fingerprint, justification_prompt(prompt, answer), prompt.messages, list(prompt.options), max_new_tokens, seed]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def distill(
    teacher: Backend, prompts: Sequence[BuiltPrompt], answers: Sequence[int], *, max_new_tokens: int, seed: int = 0,
    log: TeacherLog | None = None, chunk: int = 8, stage: str = "teacher generation",
) -> list[Reasoned]:
    """Justify each ``answers[i]`` of ``prompts[i]`` (reasoning prompts), then check the teacher agrees.

    Examples whose answers ``log`` holds are not asked again; the others are asked ``chunk`` at a
    time and logged one by one. Reports the stage ``stage`` (:mod:`recbench.progress`).
    """
    log = log if log is not None else TeacherLog()
    explain = DecodingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                             forced_prefix=REASON_PREFIX, stop=(PREDICTION, PARAGRAPH))
    keys = [answer_key(teacher.fingerprint, p, a, max_new_tokens, seed) for p, a in zip(prompts, answers)]
    first = {key: i for i, key in reversed(list(enumerate(keys)))}  # identical examples are asked once
    copies = Counter(keys)
    todo = sorted(i for key, i in first.items() if key not in log)
    with progress.stage(stage, len(prompts), "ex"):
        progress.advance(sum(key in log for key in keys))
        for lo in range(0, len(todo), chunk):
            part = todo[lo : lo + chunk]
            with progress.hidden():  # this stage counts examples, not the backend's prompts
                said = teacher.generate([justification_prompt(prompts[i], answers[i]) for i in part], explain)
            for i, out in zip(part, said):
                reason = " ".join(out[0].text.split())
                text = ""
                if reason:
                    predict = DecodingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                                             forced_prefix=f"{REASON_PREFIX} {reason}\n{TEXT_PREFIX}",
                                             stop=("</option>", PARAGRAPH))
                    with progress.hidden():
                        text = teacher.generate([prompts[i].messages], predict)[0][0].text
                log.add(keys[i], reason, text)
                progress.advance(copies[keys[i]])
    out = []
    for prompt, answer, key in zip(prompts, answers, keys):
        reason, text = log.answers[key]
        if not reason:
            out.append(Reasoned(reason, None, False))
            continue
        choice = choose_by_ngrams(text, prompt.options)
        out.append(Reasoned(reason, choice.index, choice.valid and choice.index == answer))
    return out
