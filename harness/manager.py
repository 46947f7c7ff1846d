"""Builds the plugin manager and the registry. Nothing here runs at import time."""

from __future__ import annotations

import importlib
import os
from functools import partial
from typing import Any

import pluggy

from recbench import hookspecs
from recbench.registry import Registry

# recbench's own datasets, tasks, methods and metrics: registered through the same hooks as a
# third party's, in this order. Modules here must stay light to import (no torch at top level).
DEFAULT_PLUGINS = (
    "recbench.metrics",
    "recbench.plugins.datasets.movielens",
    "recbench.plugins.datasets.user_data",
    "recbench.plugins.datasets.synthetic",
    "recbench.plugins.datasets.artwork_data",
    "recbench.plugins.datasets.artwork_logs",
    "recbench.plugins.datasets.genre_match",
    "recbench.tasks",
    "recbench.plugins.classic.random_baseline",
    "recbench.plugins.classic.most_popular",
    "recbench.plugins.artwork.most_chosen",
    "recbench.plugins.artwork.production",
    "recbench.plugins.classic.ease",
    "recbench.plugins.classic.nmf",
    "recbench.plugins.classic.als",
    "recbench.plugins.classic.bpr",
    "recbench.plugins.classic.lightgcn",
    "recbench.plugins.classic.mcl",
    "recbench.plugins.classic.sasrec",
    "recbench.plugins.classic.bert4rec",
    "recbench.plugins.llm.zero_shot",
    "recbench.plugins.llm.sft",
    "recbench.plugins.llm.dpo",
    "recbench.plugins.llm.grpo",
    "recbench.plugins.llm.rlhf",
    "recbench.plugins.llm.emb",
    "recbench.plugins.llm.langptune",
    "recbench.plugins.llm.curec",
    "recbench.plugins.cluster",
    "recbench.plugins.llm.verbalization",
)

ENTRY_POINT_GROUP = "recbench"
DISABLE_AUTOLOAD_ENV = "RECBENCH_DISABLE_PLUGIN_AUTOLOAD"


def get_plugin_manager(extra_plugins: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with recbench's hook specs, its built-ins, installed plugins and ``extra_plugins``.

    Installed plugins come from the ``recbench`` entry-point group unless
    ``RECBENCH_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value other than ``0``.
    """
    pm = pluggy.PluginManager("recbench")
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "") in ("", "0"):
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def plugin_source(pm: pluggy.PluginManager, plugin: Any) -> str:
    """Where a plugin came from: its distribution and version, or 'built-in'."""
    name = pm.get_name(plugin) or repr(plugin)
    for loaded, dist in pm.list_plugin_distinfo():
        if loaded is plugin:
            return f"{dist.project_name} {dist.version}"
    if name in DEFAULT_PLUGINS:
        from recbench import __version__

        return f"recbench {__version__} (built-in)"
    return "registered in-process"


def load_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Call every registration hook, one plugin at a time, so each entry knows its source."""
    pm = pm or get_plugin_manager()
    registry = Registry()
    sections = (
        ("recbench_register_datasets", registry.datasets),
        ("recbench_register_task_kinds", registry.task_kinds),
        ("recbench_register_tasks", registry.tasks),
        ("recbench_register_methods", registry.methods),
        ("recbench_register_metrics", registry.metrics),
        ("recbench_register_executors", registry.executors),
    )
    for hook_name, section in sections:
        hook = getattr(pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order, not pluggy's LIFO call order
            source = pm.get_name(impl.plugin) or impl.plugin_name
            impl.function(partial(_register, section, source, hook_name))
    registry.check_tasks()
    return registry


def _register(section: Any, source: str, hook_name: str, value: Any) -> None:
    if hook_name == "recbench_register_tasks" and not hasattr(value, "kind"):
        from recbench.task import TaskSpec

        value = TaskSpec.from_file(value)
    section.add(value, source)
