"""Bad input is caught where it enters: `data add`, task parameters, seeds, references, scores.

Each test reproduces one report of issue #14 with a command a new user would type.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recbench.cli import main
from recbench.errors import ConfigError, DatasetError, PredictionError
from recbench.method import ScoringMethod
from recbench.plugins.datasets import user_data
from recbench.testing import run_method, tiny_task

HEADER = "user_id,item_id,timestamp\n"


def _interactions(tmp_path, rows, name="log.csv"):
    """A CSV with `rows` as (user, item, timestamp) triples."""
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


GOOD = [(f"u{u}", f"i{i}", 1_614_556_800 + 100 * u + i) for u in range(5) for i in range(25)]  # 5 users x 25 items


# --- data add ----------------------------------------------------------------------------------


def test_data_add_refuses_a_name_another_plugin_registers(tmp_path, capsys):
    path = _interactions(tmp_path, GOOD)
    assert main(["data", "add", "artwork-ml100k", "--interactions", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'artwork-ml100k' is already registered by 'recbench.plugins.datasets.artwork_data'" in err
    assert not (user_data.descriptors_dir() / "artwork-ml100k.toml").exists()
    # a name this command registered is its own to replace
    assert main(["data", "add", "mine", "--interactions", str(path)]) == 0
    assert main(["data", "add", "mine", "--interactions", str(path)]) == 0  # the same command replaces it


def test_a_bad_descriptor_is_skipped_with_a_warning_and_never_locks_the_cli(tmp_path, capsys):
    path = _interactions(tmp_path, GOOD)
    assert main(["data", "add", "mine", "--interactions", str(path)]) == 0
    folder = user_data.descriptors_dir()
    # what an older recbench let through: a built-in name, and a file someone broke by hand
    (folder / "artwork-ml100k.toml").write_text((folder / "mine.toml").read_text().replace('"mine"', '"artwork-ml100k"'))
    (folder / "broken.toml").write_text("name = [unclosed\n")
    capsys.readouterr()
    assert main(["list", "datasets"]) == 0
    out, err = capsys.readouterr()
    assert f"{folder / 'artwork-ml100k.toml'}: it registers 'artwork-ml100k', the name of a built-in dataset; skipped" in err
    assert f"{folder / 'broken.toml'}: broken dataset descriptor" in err and "Fix or delete that file" in err
    assert "mine" in out and "Artwork personalization proxy" in out  # the built-in and the good one both stay


def test_exact_duplicate_rows_are_dropped_with_a_count_and_conflicting_ones_named(tmp_path, capsys):
    path = _interactions(tmp_path, GOOD + [GOOD[24], GOOD[24], GOOD[49]])  # users 0 and 1's last interactions
    assert main(["data", "add", "dups", "--interactions", str(path)]) == 0
    assert f"warning: dropped 3 exact repeat(s) of an earlier row of {path}" in capsys.readouterr().err
    catalog = user_data.catalog_from_files("dups", path)
    assert len(catalog.interactions) == len(GOOD) and catalog.provenance["source"]["duplicate_rows_dropped"] == 3
    # the repeated last interaction used to leak into training; the run now works
    assert main(["run", "--task", "fullrank", "--method", "most_popular", "--dataset", "dups", "-q"]) == 0

    rated = tmp_path / "rated.csv"
    rated.write_text("user_id,item_id,timestamp,rating\na,x,100,4\na,y,101,3\na,x,100,5\n")
    with pytest.raises(DatasetError, match=r"data rows 1, 3 record the same user, item and timestamp with different \['rating'\]"):
        user_data.catalog_from_files("rated", rated)


def test_one_non_numeric_timestamp_names_its_own_row(tmp_path):
    rows = [("a", "x", 1_614_556_800 + n) for n in range(5)] + [("a", "y", "yesterday")]
    with pytest.raises(DatasetError) as info:
        user_data.catalog_from_files("ts", _interactions(tmp_path, rows))
    message = str(info.value)
    assert "holds Unix seconds, but data rows 6 are not numbers (first: 'yesterday')" in message
    assert "rows 1" not in message


def test_an_empty_file_is_refused_and_one_too_small_for_any_test_example_is_warned_about(tmp_path, capsys):
    with pytest.raises(DatasetError, match=r"log\.csv: no interactions \(a header without data rows\?\)"):
        user_data.add_user_dataset("empty", _interactions(tmp_path, []))
    assert not (user_data.descriptors_dir() / "empty.toml").exists()
    path = _interactions(tmp_path, [("a", "x", 100)], name="one.csv")
    assert main(["data", "add", "one", "--interactions", str(path)]) == 0
    assert "1 interaction(s) from 1 user(s), and no user has 3 or more" in capsys.readouterr().err
    pairs = [(f"u{n % 13}", f"i{n}", 100 + n) for n in range(26)]  # 13 users with 2 interactions, 26 items
    assert main(["data", "add", "pairs", "--interactions", str(_interactions(tmp_path, pairs, name="pairs.csv"))]) == 0
    assert "26 interaction(s) from 13 user(s), and no user has 3 or more" in capsys.readouterr().err
    # and a run on it is an error, not rc 0 with 0 examples and NaN metrics
    assert main(["run", "--task", "fullrank", "--method", "random", "--dataset", "pairs", "-q"]) == 2
    assert "task 'fullrank' built no test examples from dataset 'pairs' (13 users" in capsys.readouterr().err
    assert not any(user_data.descriptors_dir().parent.rglob("*.examples.jsonl*"))


def test_data_add_artwork_logs_command_registers_an_artwork_dataset(tmp_path, capsys):
    records = []
    for n, (user, title) in enumerate([("u1", "t1"), ("u2", "t1"), ("u1", "t2")]):
        arts = [{"artwork_id": f"{title}-{k}", "caption": f"scene {k}"} for k in (1, 2)]
        records.append(json.dumps({"user_id": user, "title_id": title, "timestamp": 1000 + n, "artworks": arts,
                                   "engaged": f"{title}-1"}))
    logs = tmp_path / "logs.jsonl"
    logs.write_text("\n".join(records) + "\n")
    assert main(["data", "add-artwork-logs", "shop-art", "--logs", str(logs)]) == 0
    assert "use it with --task artwork --dataset shop-art" in capsys.readouterr().out
    assert main(["data", "info", "shop-art", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 0  # histories only; the 3 choices are the log
    assert main(["data", "add-artwork-logs", "ml-100k", "--logs", str(logs)]) == 2
    assert "'ml-100k' is already registered" in capsys.readouterr().err


# --- task parameters, seeds, references ---------------------------------------------------------


RUN = ["run", "--task", "fullrank", "--method", "most_popular", "--dataset", "synthetic-tiny", "-q"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "-1"], "--seed '-1': seeds are integers from 0 to 4,294,967,295"),
        (["--seed", "0,4294967296"], "seeds are integers from 0 to 4,294,967,295"),
        (["--set", "task.k=100000"], "k=100000 asks for more items per example than dataset 'synthetic-tiny' has (40)"),
        (["--set", "task.k=0"], "task 'fullrank' params: k must be at least 1, got 0; e.g. --set task.k=20"),
        (["--set", "task.min_interactions=1000"], "task 'fullrank' built no test examples from dataset 'synthetic-tiny'"),
    ],
)
def test_bad_run_inputs_are_errors_that_name_the_fix(argv, message, capsys):
    assert main([*RUN, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "predict()" not in err


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("topk", {"horizon": -1}, "horizon must be at least 1, got -1; e.g. --set task.horizon=10"),
        ("topk", {"user_fractions": (0.5, 0.5)}, "user_fractions must be 3 non-negative"),
        ("rerank", {"n_candidates": 1}, "n_candidates must be at least 2"),
        ("rerank", {"sampling_seed": -3}, "sampling_seed must be at least 0"),
        ("artwork", {"n_test": 0}, "n_test must be at least 1"),
    ],
)
def test_task_parameters_are_checked_when_the_task_is_made(kind, params, message):
    with pytest.raises(ConfigError, match=f"task 'tiny-{kind}' params: .*{message.split(';')[0]}"):
        tiny_task(kind, params)


def test_artwork_sizes_that_do_not_fit_say_what_was_asked_and_what_fits():
    with pytest.raises(ConfigError) as info:
        tiny_task("artwork", {"preset": "paper", "n_train": None, "n_valid": None, "n_test": None})
    message = str(info.value)
    assert "(preset 'paper'): 1,000 valid + 5,000 test pairs + at least 1 train pair do not fit" in message
    assert "-" not in message.split("do not fit")[0].replace("tiny-artwork", "")  # no negative train count
    assert "--set task.n_train=" in message


def test_artwork_stats_tell_pairs_from_examples():
    _, data = tiny_task("artwork", {"n_test": 60})
    assert data.stats["test_pairs"] == 60 and data.stats["test_examples"] == len(data.test_inputs) >= 60


def test_leaderboard_with_an_unknown_reference_is_an_error(tmp_path, capsys):
    assert main([*RUN, "--results-dir", str(tmp_path / "res")]) == 0
    argv = ["leaderboard", "--task", "fullrank", "--results-dir", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]
    assert main([*argv, "--reference", "nosuch"]) == 2
    assert "--reference: unknown method 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "lb").exists()
    assert main([*argv, "--reference", "most_populr"]) == 2
    assert "Did you mean 'most_popular'" in capsys.readouterr().err
    assert main([*argv, "--reference", "most_popular", "--no-print"]) == 0


def test_data_info_into_a_closed_pipe_ends_quietly():
    script = "import sys; from recbench.cli import main; sys.exit(main(['data', 'info', 'synthetic-tiny']))"
    proc = subprocess.run(f"{sys.executable} -c \"{script}\" | head -1", shell=True, capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip().startswith("name:") and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
    # a reader that never reads: every write fails
    proc = subprocess.run(f"{sys.executable} -c \"{script}\" | true; exit ${{PIPESTATUS[0]}}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 141 and proc.stderr == ""


# --- scores ---------------------------------------------------------------------------------------


class HalfNaN(ScoringMethod):
    name = "half_nan"
    description = "NaN for every even item code (a method bug)"

    def score(self, examples):
        scores = np.tile(np.arange(self.catalog.n_items, dtype=float), (len(examples), 1))
        scores[:, ::2] = np.nan
        return scores


@pytest.mark.parametrize("kind, source", [("fullrank", "score()"), ("rerank", "score_candidates()"), ("topk", "score()")])
def test_nan_scores_are_named_on_every_contract(kind, source):
    task, data = tiny_task(kind)
    with pytest.raises(PredictionError, match=rf"'half_nan' .*: {re.escape(source)} gave NaN or \+inf in \d+ of \d+ columns") as info:
        run_method(HalfNaN, None, 0, task, data)
    assert "Scores must be finite numbers, or -inf for an item the method rules out" in str(info.value)


# --- docs that must agree with the code -----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_recbench_command_in_the_readme_parses():
    import shlex

    from recbench.cli import build_parser

    lines = [line.split("#")[0] for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith(".venv/bin/recbench ")]
    assert any("data add-artwork-logs" in line for line in lines) and len(lines) >= 10
    parser = build_parser()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])  # argparse exits on an unknown command or option
        assert callable(args.func), line


def test_contributing_states_the_code_s_defaults_and_which_pip():
    from recbench import runner

    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert f"`predict_batch_size` examples (default {runner.DEFAULT_BATCH_SIZE})" in text
    assert "\npip install" not in text and "(`pip install -e .`)" not in text  # always the venv's own pip


def test_make_demo_writes_its_results_and_leaderboards_outside_the_checkout(tmp_path):
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -o: plan the demo's own steps, not a venv rebuild (pyproject.toml may be newer than .venv)
    # --no-print-directory: under `make test` (CI) this make is a sub-make and would add "Leaving directory" lines
    plan = subprocess.run(["make", "--no-print-directory", "-n", "-o", ".venv/bin/recbench", "demo", f"DEMO_DIR={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    runs = [line for line in plan.splitlines() if "recbench run" in line]
    boards = [line for line in plan.splitlines() if "recbench leaderboard" in line]
    assert len(runs) == 2 and len(boards) == 1 and not any(" -q" in line for line in runs)  # progress stays visible
    assert all(f'--results-dir "{tmp_path}/results"' in line for line in runs + boards)
    assert f'--out "{tmp_path}/leaderboards"' in boards[0] and f"{tmp_path}/leaderboards" in plan.splitlines()[-1]
