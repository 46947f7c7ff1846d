"""recbench's built-in tasks: one TOML spec and one task kind module per task."""

from __future__ import annotations

from pathlib import Path

from recbench import hookimpl

SPEC_DIR = Path(__file__).parent


@hookimpl
def recbench_register_task_kinds(register):
    from recbench.tasks.artwork import ArtworkTask
    from recbench.tasks.fullrank import FullRankTask
    from recbench.tasks.learnability import LearnabilityTask
    from recbench.tasks.rerank import RerankTask
    from recbench.tasks.session import SessionTask
    from recbench.tasks.topk import TopKTask

    for kind in (FullRankTask, RerankTask, TopKTask, ArtworkTask, LearnabilityTask, SessionTask):
        register(kind)


@hookimpl
def recbench_register_tasks(register):
    for path in sorted(SPEC_DIR.glob("*.toml")):
        register(path)
