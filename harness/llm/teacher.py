"""Reasoning distillation (the artwork paper, section 4.2): a teacher justifies the known answer.

For each training example the teacher is first shown the prompt and the artwork the user engaged
with and asked why it suits the user; then, given only the prompt and its own justification, it
predicts the best artwork. Examples whose prediction is not the engaged artwork are dropped (the
paper reports under 2% with QwQ-32B; a small local teacher drops many more, and the run records
the rate). The kept justifications become the student's target ``Reason: ... Prediction: ...``.

The teacher is any backend of the toolkit (a local model, or a large one behind an
OpenAI-compatible server); wrapped in :class:`~recbench.llm.cache.CachedBackend`, its answers are
reused by every student run that asks the same questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def distill(
    teacher: Backend, prompts: Sequence[BuiltPrompt], answers: Sequence[int], *, max_new_tokens: int, seed: int = 0
) -> list[Reasoned]:
    """Justify each ``answers[i]`` of ``prompts[i]`` (reasoning prompts), then check the teacher agrees."""
    explain = DecodingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                             forced_prefix=REASON_PREFIX, stop=(PREDICTION, PARAGRAPH))
    said = teacher.generate([justification_prompt(p, a) for p, a in zip(prompts, answers)], explain)
    reasons = [" ".join(out[0].text.split()) for out in said]
    out = []
    for prompt, answer, reason in zip(prompts, answers, reasons):
        if not reason:
            out.append(Reasoned(reason, None, False))
            continue
        predict = DecodingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                                 forced_prefix=f"{REASON_PREFIX} {reason}\n{TEXT_PREFIX}", stop=("</option>", PARAGRAPH))
        text = teacher.generate([prompt.messages], predict)[0][0].text
        choice = choose_by_ngrams(text, prompt.options)
        out.append(Reasoned(reason, choice.index, choice.valid and choice.index == answer))
    return out
