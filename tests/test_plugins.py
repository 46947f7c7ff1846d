"""The plugin system: hooks, registry checks, CLI listing, and a real out-of-tree plugin."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recbench import hookimpl, hookspecs
from recbench.cli import build_parser, main
from recbench.errors import RegistrationError, UnknownNameError
from recbench.manager import get_plugin_manager, load_registry
from recbench.method import ScoringMethod

ROOT = Path(__file__).resolve().parent.parent


def _hooks():
    return [(name, fn) for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("recbench_")]


def test_every_hook_is_documented():
    hooks = _hooks()
    assert len(hooks) >= 8
    for name, fn in hooks:
        doc = inspect.getdoc(fn) or ""
        params = [p for p in inspect.signature(fn).parameters]
        for param in params:
            assert f":param {param}:" in doc, f"{name} does not document {param}"
        assert ":return:" in doc and "called" in doc.lower(), f"{name} must document its return and calling mode"


def test_builtins_register_through_hooks():
    pm = get_plugin_manager()
    registry = load_registry(pm)
    assert {"random", "most_popular"} <= set(registry.methods.names())
    assert {"fullrank", "rerank", "topk"} <= set(registry.tasks.names())
    assert {"ml-100k", "ml-1m", "ml-latest-small", "synthetic-tiny"} <= set(registry.datasets.names())
    assert {"ndcg", "hr", "mrr", "ips"} <= set(registry.metrics.names())
    assert registry.methods.sources["most_popular"] == "recbench.plugins.classic.most_popular"


def test_every_builtin_method_builds_its_default_config():
    """``recbench run --method NAME`` with no ``--set`` starts from ``Config()``: it must build (a preset's None
    options included), and no attribute of the method may hide a hook the runner calls."""
    from recbench.method import FitSummary, Method

    hooks = [k for k, v in vars(Method).items() if callable(v) and not k.startswith("__")]
    registry = load_registry(get_plugin_manager())
    for name in registry.methods.names():
        cls = registry.methods.get(name)
        assert cls.Config() is not None, name
        method = cls(cls.Config(), seed=0)
        shadowed = [k for k in hooks if not callable(getattr(method, k))]
        assert not shadowed, f"{name}: {shadowed} shadow the runner's Method hooks (verbal_* once had stages = a tuple)"
        assert all(stage.name for stage in method.stages(FitSummary(1000, 100, 100, 50, 200))), name  # the run plan


class _Dummy(ScoringMethod):
    name = "most_popular"
    description = "an impostor"


def test_duplicate_name_names_both_sources():
    class Impostor:
        @hookimpl
        def recbench_register_methods(self, register):
            register(_Dummy)

    pm = get_plugin_manager(extra_plugins=(Impostor(),))
    with pytest.raises(RegistrationError) as err:
        load_registry(pm)
    message = str(err.value)
    assert "recbench.plugins.classic.most_popular" in message and "registered twice" in message
    assert "most_popular" in message


@pytest.mark.parametrize(
    "bad, expected",
    [(object, "subclass of recbench.method.Method"), ("not a class", "subclass"), (42, "subclass")],
)
def test_wrong_type_is_rejected(bad, expected):
    class Broken:
        @hookimpl
        def recbench_register_methods(self, register):
            register(bad)

    with pytest.raises(RegistrationError, match=expected):
        load_registry(get_plugin_manager(extra_plugins=(Broken(),)))


def test_method_without_frozen_config_is_rejected():
    from dataclasses import dataclass

    @dataclass
    class Mutable:
        x: int = 1

    class Loose(ScoringMethod):
        name = "loose"
        description = "mutable config"
        Config = Mutable

    class Plugin:
        @hookimpl
        def recbench_register_methods(self, register):
            register(Loose)

    with pytest.raises(RegistrationError, match="frozen dataclass"):
        load_registry(get_plugin_manager(extra_plugins=(Plugin(),)))


def test_unknown_name_suggests_close_matches_and_lists_all():
    registry = load_registry()
    with pytest.raises(UnknownNameError) as err:
        registry.methods.get("most_popluar")
    message = str(err.value)
    assert "Did you mean 'most_popular'" in message
    assert "random" in message and "recbench list methods" in message


def test_lifecycle_hooks_are_called(tmp_path):
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner

    calls = []

    class Logger:
        @hookimpl
        def recbench_run_started(self, run):
            calls.append(("started", run.method))

        @hookimpl
        def recbench_batch_scored(self, run, start, stop, total):
            calls.append(("batch", stop, total))

        @hookimpl
        def recbench_run_finished(self, run, result):
            calls.append(("finished", result["run_id"]))

    pm = get_plugin_manager(extra_plugins=(Logger(),))
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path))
    outcome = runner.run(RunRequest("fullrank", "most_popular", dataset="synthetic-tiny", quiet=True))
    assert calls[0] == ("started", "most_popular")
    assert calls[-1] == ("finished", outcome.document["run_id"])
    batches = [c for c in calls if c[0] == "batch"]
    assert batches and batches[-1][1] == batches[-1][2] == outcome.document["n_examples"]


@pytest.mark.parametrize(
    "argv",
    [[], ["run"], ["list"], ["plugins"], ["data"], ["data", "fetch"], ["data", "info"], ["data", "add"], ["leaderboard"]],
)
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    assert "usage: recbench" in capsys.readouterr().out


def test_list_methods_shows_supported_tasks(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("most_popular"))
    assert "fullrank" in line and "rerank" in line and "topk" in line


def test_unknown_method_is_a_clean_cli_error(capsys):
    assert main(["run", "--task", "fullrank", "--method", "nope", "--dataset", "synthetic-tiny", "-q"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["list", "methods"], ["list", "tasks"], ["plugins"]])
def test_light_commands_do_not_import_torch(argv):
    code = (
        "import sys; from recbench.cli import main; main(%r); "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "assert 'transformers' not in sys.modules" % (argv,)
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode in (0,), proc.stderr


def test_out_of_tree_plugin_installs_and_runs(tmp_path):
    """Install tests/example_plugin as a user would, then run it through `recbench run`."""
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(ROOT / "tests" / "example_plugin")],
        capture_output=True, text=True,
    )
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target), "RECBENCH_DISABLE_PLUGIN_AUTOLOAD": "0"}
    cli = [sys.executable, "-m", "recbench.cli"]
    plugins = subprocess.run([*cli, "plugins"], capture_output=True, text=True, env=env)
    assert plugins.returncode == 0, plugins.stderr
    assert "recbench-example-plugin 0.1.0" in plugins.stdout and "cooccurrence" in plugins.stdout
    assert "grpo_brief" in plugins.stdout  # an LLM recipe with a custom reward, out of tree
    run = subprocess.run(
        [*cli, "run", "--task", "fullrank", "--method", "cooccurrence,most_popular", "--dataset", "synthetic-tiny", "-q"],
        capture_output=True, text=True, env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "cooccurrence" in run.stdout
    # the plugin's own test suite runs recbench's conformance kit
    kit = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "example_plugin" / "tests")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert kit.returncode == 0, kit.stdout + kit.stderr
    # with autoload disabled, the plugin is not loaded
    off = subprocess.run([*cli, "list", "methods"], capture_output=True, text=True,
                         env={**env, "RECBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "cooccurrence" not in off.stdout
