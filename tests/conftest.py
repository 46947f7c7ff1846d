"""Test-suite isolation: no installed third-party plugins, caches and results in temp folders."""

from __future__ import annotations

import os

import pytest

# set before recbench builds any plugin manager: stray installed plugins must not change results
os.environ["RECBENCH_DISABLE_PLUGIN_AUTOLOAD"] = "1"
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own RECBENCH_HOME and results folder; the suite never touches ~/.cache."""
    home = tmp_path_factory.mktemp("recbench-home")
    monkeypatch.setenv("RECBENCH_HOME", str(home))
    monkeypatch.setenv("RECBENCH_RESULTS", str(home / "results"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield home


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: the test machines are shared, and OpenMP oversubscription
    made LLM tests 7x slower. Restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
