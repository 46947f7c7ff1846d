"""``zero_shot``: a prompted LLM without training, on any task whose kind supplies an LLM interface.

The task's interface (:mod:`recbench.llm.interface`) writes the prompts and reads the replies:
a candidate task gets the chosen candidate first (the others in their given order) or, with
``mode="score"``, every option ranked by its log-likelihood; a generation task gets a list of
titles, grounded by its contract. Every batch reports how often the output could be used, and
each example keeps the raw output and the parsed choice.
"""

from __future__ import annotations

from recbench import hookimpl
from recbench.llm.method import LLMConfig, LLMMethod

ZeroShotConfig = LLMConfig


class ZeroShot(LLMMethod):
    name = "zero_shot"
    description = "A prompted LLM, no training: picks a candidate or lists titles, as the task's interface asks"
    Config = ZeroShotConfig


@hookimpl
def recbench_register_methods(register):
    register(ZeroShot)
