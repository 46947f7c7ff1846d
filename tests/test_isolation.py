"""Hostile plugins: every route the audit of issue #13 used to reach test targets, as a method.

Each hostile method answers honestly (like its base class) unless it finds the targets; then it
puts the target first. In a worker none of them may raise its score; in process the memory routes
work (shown below, so these tests can fail), and the conformance kit catches every route.
"""

from __future__ import annotations

import gc
import glob
import inspect
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from recbench import hookimpl
from recbench.data.catalog import Catalog
from recbench.errors import TargetLeakError
from recbench.examples import Predictions
from recbench.manager import get_plugin_manager, load_registry
from recbench.plugins.artwork.most_chosen import MostChosen
from recbench.plugins.classic.most_popular import MostPopular
from recbench.results import ResultStore
from recbench.runner import RunRequest, Runner
from recbench.task import TaskData
from recbench.testing import MethodConformance
from recbench.worker import IN_PROCESS, WORKER, MethodFailed


def _table_of(data) -> dict[str, np.ndarray]:
    keys = data.test_inputs.keys
    return {str(k): data.test_targets.items_of(i) for i, k in enumerate(keys)}


def _from_stack():
    for info in inspect.stack():
        for value in list(info.frame.f_locals.values()):
            if isinstance(value, TaskData):
                return _table_of(value)
    return None


def _from_gc():
    found = {}
    for data in _task_data_in_memory():  # every copy: the one being scored is among them
        found.update(_table_of(data))
    return found or None


def _task_data_in_memory():
    return [obj for obj in gc.get_objects() if isinstance(obj, TaskData)]


def _split_cache_files() -> list[str]:
    home = os.environ["RECBENCH_HOME"]
    return [p for p in glob.glob(f"{home}/splits/**", recursive=True) if os.path.isfile(p)]


def _from_split_cache():
    loaded = []
    for path in _split_cache_files():
        with open(path, "rb") as handle:
            loaded.append(pickle.load(handle))
    inputs = next((o for o in loaded if hasattr(o, "test_inputs")), None)
    targets = next((o for o in loaded if hasattr(o, "test_targets")), None)
    if inputs is not None and targets is not None:
        return {str(k): targets.test_targets.items_of(i) for i, k in enumerate(inputs.test_inputs.keys)}
    return None


def _poison_split_cache():
    """Rewrite every cached split so its targets are item 0 (what the audit's poisoning did)."""
    for path in _split_cache_files():
        with open(path, "rb") as handle:
            obj = pickle.load(handle)
        if hasattr(obj, "test_targets"):
            obj.test_targets.items[:] = 0
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)
    return None


class _Hostile:
    """Mixin: steal in fit() by ``route``, put the stolen target first in predict()."""

    route: str = ""

    def fit(self, data):
        super().fit(data)
        self._stolen = None
        try:  # a sneaky method hides a failed attempt and answers honestly
            self._stolen = STEAL[self.route]()
        except Exception:
            pass

    def predict(self, examples, contract):
        honest = super().predict(examples, contract)
        items = honest.items.copy()
        for data in _task_data_in_memory() if self.route == "overwrite" else ():
            rows = {str(k): i for i, k in enumerate(data.test_inputs.keys)}
            for row, key in enumerate(examples.keys):  # make every target what we answer first
                if str(key) in rows:
                    data.test_targets.items[data.test_targets.indptr[rows[str(key)]]] = items[row, 0]
        for row in range(len(examples)):
            target = self._steal_one(examples, row)
            if target is None or target in examples.histories.items_of(row):
                continue
            rest = [x for x in items[row] if x != target]
            items[row] = np.asarray([target, *rest][: items.shape[1]])
        return Predictions(items=items)

    def _steal_one(self, examples, row):
        if not self._stolen:
            return None
        found = self._stolen.get(str(examples.keys[row]))
        return None if found is None or not len(found) else int(found[0])


STEAL = {"stack": _from_stack, "gc": _from_gc, "overwrite": lambda: None, "read_cache": _from_split_cache,
         "poison_cache": _poison_split_cache}


def _hostile(route: str, base: type = MostPopular) -> type:
    bases = (base,) if issubclass(base, _Hostile) else (_Hostile, base)
    cls = type(f"Hostile_{route}", bases, {"name": f"hostile_{route}", "route": route,
                                                       "description": f"reaches for targets: {route}"})
    cls.__module__ = __name__
    globals()[cls.__name__] = cls  # importable by name, so a worker can load it
    return cls


HOSTILE = {route: _hostile(route) for route in STEAL}


def _artwork_from_catalog():
    for obj in gc.get_objects():
        if isinstance(obj, Catalog) and "artwork_log" in obj.tables:
            log = obj.tables["artwork_log"]
            return {(int(u), int(i)): int(c) for u, i, c in zip(log["user"], log["item"], log["chosen"])}
    return None


def _artwork_from_log_file():
    home = os.environ["RECBENCH_HOME"]
    for path in glob.glob(f"{home}/datasets/*/table-artwork_log.parquet"):
        log = pd.read_parquet(path)
        return {(int(u), int(i)): int(c) for u, i, c in zip(log["user"], log["item"], log["chosen"])}
    return None


class _ArtworkHostile(_Hostile):
    def _steal_one(self, examples, row):
        if not self._stolen:
            return None
        return self._stolen.get((int(examples.users[row]), int(examples.attributes["title_item"].iloc[row])))


class _ArtworkBase(_ArtworkHostile, MostChosen):
    pass


STEAL.update({"artwork_catalog": _artwork_from_catalog, "artwork_log_file": _artwork_from_log_file})
ARTWORK_HOSTILE = {route: _hostile(route, _ArtworkBase) for route in ("artwork_catalog", "artwork_log_file")}


class HostilePlugin:
    @hookimpl
    def recbench_register_methods(self, register):
        for cls in [*HOSTILE.values(), *ARTWORK_HOSTILE.values()]:
            register(cls)


def _runner(tmp_path) -> Runner:
    pm = get_plugin_manager(extra_plugins=(HostilePlugin(),))
    return Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))


FULLRANK = dict(dataset="synthetic-tiny", quiet=True)
ARTWORK = dict(dataset="artwork-tiny", quiet=True, task_settings={"n_train": 1500, "n_valid": 200, "n_test": 500})


def _score(outcome, metric="ndcg@10") -> float:
    return outcome.document["metrics"][metric]["value"]


# --- the routes are real: in process, the memory routes reach the targets -----------------------


@pytest.mark.parametrize("route", ["stack", "gc"])
def test_memory_routes_reach_the_targets_in_process(tmp_path, route):
    runner = _runner(tmp_path)
    honest = _score(runner.run(RunRequest("fullrank", "most_popular", **FULLRANK)))
    cheat = runner.run(RunRequest("fullrank", f"hostile_{route}", isolation=IN_PROCESS, **FULLRANK))
    assert honest < 0.7 and _score(cheat) == pytest.approx(1.0), "the attack must work in process, or this test proves nothing"
    assert cheat.document["execution"]["isolation"] == IN_PROCESS


# --- in a worker, no route raises a score ------------------------------------------------------


@pytest.mark.parametrize("route", ["stack", "gc", "overwrite"])
def test_memory_routes_find_nothing_in_a_worker(tmp_path, route):
    runner = _runner(tmp_path)
    honest = _score(runner.run(RunRequest("fullrank", "most_popular", **FULLRANK)))
    outcome = runner.run(RunRequest("fullrank", f"hostile_{route}", **FULLRANK))
    assert outcome.document["execution"]["isolation"] == WORKER
    assert _score(outcome) == pytest.approx(honest)


@pytest.mark.parametrize("route", ["read_cache", "poison_cache"])
def test_split_cache_routes_void_the_run_and_leave_the_cache_intact(tmp_path, route):
    runner = _runner(tmp_path)
    honest = _score(runner.run(RunRequest("fullrank", "most_popular", **FULLRANK)))  # writes the split cache
    assert _split_cache_files(), "the split cache must exist for this attack"
    with pytest.raises(TargetLeakError, match=rf"method 'hostile_{route}' tried to access recbench's caches"):
        runner.run(RunRequest("fullrank", f"hostile_{route}", **FULLRANK))
    assert not list((tmp_path / "results" / "fullrank").glob(f"hostile_{route}/*.json"))
    again = runner.run(RunRequest("fullrank", "most_popular", force=True, **FULLRANK))
    assert _score(again) == pytest.approx(honest)


def test_overwriting_targets_in_process_voids_the_run(tmp_path):
    with pytest.raises(TargetLeakError, match="test targets changed while method 'hostile_overwrite' ran"):
        _runner(tmp_path).run(RunRequest("fullrank", "hostile_overwrite", isolation=IN_PROCESS, **FULLRANK))
    assert not list((tmp_path / "results").rglob("*.json"))


def test_artwork_catalog_and_log_file_routes_gain_nothing(tmp_path):
    runner = _runner(tmp_path)
    honest = _score(runner.run(RunRequest("artwork", "most_chosen", **ARTWORK)), "accuracy")
    in_process = runner.run(RunRequest("artwork", "hostile_artwork_catalog", isolation=IN_PROCESS, **ARTWORK))
    assert _score(in_process, "accuracy") > 0.95 and honest < 0.7  # the route is real
    isolated = runner.run(RunRequest("artwork", "hostile_artwork_catalog", **ARTWORK))
    assert _score(isolated, "accuracy") == pytest.approx(honest)
    with pytest.raises(TargetLeakError, match="'hostile_artwork_log_file' tried to access recbench's caches"):
        runner.run(RunRequest("artwork", "hostile_artwork_log_file", **ARTWORK))


# --- the conformance kit catches every route --------------------------------------------------


@pytest.mark.parametrize("cls", [*HOSTILE.values(), *ARTWORK_HOSTILE.values()], ids=lambda c: c.name)
def test_conformance_kit_fails_every_hostile_method(cls):
    kinds = ("artwork",) if cls in ARTWORK_HOSTILE.values() else ("fullrank",)
    kit = type("Kit", (MethodConformance,), {"method": cls, "kinds": kinds})()
    with pytest.raises((AssertionError, TargetLeakError)):
        kit.test_predictions_do_not_depend_on_test_targets()


# --- crash, hang and memory blow-up end the worker, not the sweep ---------------------------------


class Crasher(MostPopular):
    name = "crasher"
    description = "dies in fit"

    def fit(self, data):
        os._exit(3)


class Sleeper(MostPopular):
    name = "sleeper"
    description = "hangs in fit"

    def fit(self, data):
        import time

        time.sleep(60)


class Hog(MostPopular):
    name = "hog"
    description = "allocates without bound in fit"

    def fit(self, data):
        self._blocks = [np.ones(2**25) for _ in range(1000)]  # 256 MiB each


class FailurePlugin:
    @hookimpl
    def recbench_register_methods(self, register):
        for cls in (Crasher, Sleeper, Hog):
            register(cls)


def test_crash_hang_and_memory_blow_up_end_the_worker_with_a_clear_error(tmp_path):
    pm = get_plugin_manager(extra_plugins=(FailurePlugin(),))
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    with pytest.raises(MethodFailed, match=r"method 'crasher' exited with code 3 during fit\(\)"):
        runner.run(RunRequest("fullrank", "crasher", **FULLRANK))
    with pytest.raises(MethodFailed, match=r"'sleeper' did not finish fit\(\) within the run's 3 s timeout"):
        runner.run(RunRequest("fullrank", "sleeper", timeout_s=3, **FULLRANK))
    with pytest.raises(MethodFailed, match=r"'hog' ran out of memory in fit\(\) \(worker limit 2.0 GB"):
        runner.run(RunRequest("fullrank", "hog", max_memory_gb=2.0, **FULLRANK))
    assert not list((tmp_path / "results").rglob("*.json"))
    assert _score(runner.run(RunRequest("fullrank", "most_popular", **FULLRANK))) > 0  # the parent carries on


def test_a_failed_method_ends_its_run_not_the_sweep(tmp_path, capsys, monkeypatch):
    import recbench.manager as manager
    from recbench import cli

    original = manager.get_plugin_manager
    monkeypatch.setattr(manager, "get_plugin_manager", lambda *a, **kw: original(extra_plugins=(FailurePlugin(),)))
    out = tmp_path / "res"
    code = cli.main(["run", "--task", "fullrank", "--method", "crasher,most_popular", "--dataset", "synthetic-tiny",
                     "--results-dir", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "crasher (seed 0) failed" in err and "1 run(s) failed" in err
    assert [p.parent.name for p in out.rglob("*.json")] == ["most_popular"]


def test_a_killed_runner_takes_its_worker_with_it(tmp_path):
    """SIGKILL on the runner: its worker (a child of the fork server, not of the runner) ends within seconds."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "sleepy.py").write_text(
        "import time\nfrom recbench.plugins.classic.most_popular import MostPopular\n\n\n"
        "class Sleepy(MostPopular):\n    name = 'sleepy'\n\n    def fit(self, data):\n        time.sleep(600)\n"
    )
    runner = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from sleepy import Sleepy\nfrom recbench.worker import WorkerSession\n"
        "session = WorkerSession(Sleepy, None, 0)\nsession.ready()\nprint(session.process.pid, flush=True)\n"
        "session.fit(None)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", runner], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive, fitting
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its killed runner by 20 s")
    finally:
        parent.kill()


class Hungry(MostPopular):
    """Holds 600 MB of touched memory through fit: the worker's peak must show it."""

    name = "hungry"
    description = "most popular, after touching 600 MB"

    def fit(self, data):
        super().fit(data)
        self._ballast = np.ones(600 * 2**20 // 8)


class HungryPlugin:
    @hookimpl
    def recbench_register_methods(self, register):
        register(Hungry)


def test_results_record_the_worker_peak_memory(tmp_path):
    pm = get_plugin_manager(extra_plugins=(HungryPlugin(),))
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    lean = runner.run(RunRequest("fullrank", "most_popular", **FULLRANK)).document["timing"]["peak_memory_gb"]
    hungry = runner.run(RunRequest("fullrank", "hungry", **FULLRANK)).document["timing"]["peak_memory_gb"]
    assert 0 < lean < 1.5 and hungry > lean + 0.5  # the worker's own memory, not the runner's
