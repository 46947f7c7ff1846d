"""Leaderboard rendering from hand-made results documents with hand-computed answers."""

from __future__ import annotations

import copy

import numpy as np

import pytest

from recbench.errors import RecbenchError
from recbench.hashing import stable_hash
from recbench.leaderboard import render_leaderboard, write_leaderboard
from recbench.results import SCHEMA, ResultStore, make_run_id

TASK = "toyrank"
PROTOCOL = {
    "task": TASK, "task_version": 1, "kind": "fullrank", "dataset": "toy", "dataset_hash": "ab" * 16,
    "filters": [], "tie_rule": "stable", "params": {"k": 10}, "contract": {"kind": "ranked_list"},
    "split": {"holdout": "leave-one-out", "mask_seen": True},
}


def protocol(**changes):
    proto = copy.deepcopy(PROTOCOL)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = proto
        for part in parents:
            target = target[part]
        target[last] = value
    proto["fingerprint"] = stable_hash(proto)
    return proto


def make_doc(method, ndcg, *, hr=None, mae=None, proto=None, config=None, seed=0, created="2025-01-01T00:00:00+00:00",
             ceiling=False, plots=None):
    proto = proto or protocol()
    config = config if config is not None else {"dim": 8}
    metrics = {"ndcg@10": {"value": ndcg, "ci_low": ndcg - 0.01, "ci_high": ndcg + 0.01, "n": 100,
                           "higher_is_better": True}}
    if hr is not None:
        metrics["hr@10"] = {"value": hr, "ci_low": hr - 0.02, "ci_high": hr + 0.02, "n": 100, "higher_is_better": True}
    if mae is not None:
        metrics["mae"] = {"value": mae, "ci_low": mae - 0.1, "ci_high": mae + 0.1, "n": 100, "higher_is_better": False}
    doc = {
        "schema": SCHEMA,
        "run_id": make_run_id(TASK, proto["fingerprint"], method, config, seed),
        "created_at": created,
        "command": f"recbench run --task {TASK} --method {method} --seed {seed}",
        "task": {"name": TASK, "version": 1, "kind": "fullrank", "description": "Toy next-item ranking",
                 "primary_metric": "ndcg@10", "params": {"k": 10}},
        "dataset": {"name": "toy", "content_hash": proto["dataset_hash"]},
        "protocol": proto,
        "method": {"name": method, "description": "", "plugin": "built-in", "config": config, "fitted": {}},
        "seed": seed,
        "n_examples": 100,
        "metrics": metrics,
        "primary_metric": "ndcg@10",
        "diagnostics": {},
        "timing": {"fit_s": 1.5, "predict_s": 0.25, "evaluate_s": 0.1, "examples_per_s": 400.0},
        "environment": {"git": {"commit": "0123456789abcdef0123", "dirty": False}},
    }
    if ceiling:
        doc["ceiling"] = True
    if plots:
        doc["plots"] = plots
    return doc


@pytest.fixture
def store(tmp_path):
    return ResultStore(tmp_path / "results")


def add(store, *docs):
    for doc in docs:
        store.write(doc, [])


def table_rows(markdown, first=("rank", "run")):
    """Each Markdown table whose first header is in ``first`` (rankings and ablations by default), as
    a list of dicts keyed by header."""
    return [t for t, h in _tables(markdown) if h[0] in first]


def _tables(markdown):
    tables, current, headers = [], None, None
    for line in markdown.splitlines():
        if not line.startswith("|"):
            current = headers = None
            continue
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        if headers is None:
            headers, current = cells, []
            tables.append((current, headers))
        elif not set(line) <= set("|-: "):
            current.append(dict(zip(headers, cells)))
    return tables


def test_rows_ranked_by_primary_metric_with_ci(store):
    add(store, make_doc("pop", 0.10, hr=0.2), make_doc("sasrec", 0.30, hr=0.5), make_doc("bpr", 0.20, hr=0.4))
    board = render_leaderboard(TASK, store)
    (rows,) = table_rows(board.markdown)
    assert [(r["rank"], r["method"]) for r in rows] == [("1", "sasrec"), ("2", "bpr"), ("3", "pop")]
    assert rows[0]["ndcg@10"] == "0.3000 [0.2900, 0.3100]"
    assert rows[0]["hr@10"] == "0.5000"  # intervals of the other metrics sit in the details
    intervals = next(t for t, h in _tables(board.markdown) if h == ["row", "hr@10"])
    assert intervals[0] == {"row": "sasrec", "hr@10": "0.5000 [0.4800, 0.5200]"}
    assert list(rows[0])[:4] == ["rank", "method", "ndcg@10", "hr@10"]  # primary metric first
    assert "command" not in rows[0] and "fit" not in rows[0]  # the main table stays narrow
    (details,) = [t for t, h in _tables(board.markdown) if "command" in h]
    assert details[0]["command"] == f"`recbench run --task {TASK} --method sasrec --seed 0`"
    assert details[0]["fit"] == "1.50s" and details[0]["predict"] == "0.25s"
    assert board.markdown.index("<details>") < board.markdown.index("| sasrec | `")
    assert board.markdown.startswith(f"# Leaderboard: {TASK}\n\nToy next-item ranking\n")
    assert f"`recbench leaderboard --task {TASK}`" in board.markdown and "do not edit by hand" in board.markdown
    assert "`0123456789ab`" in board.markdown


def test_lower_is_better_primary_sorts_ascending(store):
    docs = [make_doc("a", 0.1, mae=0.9), make_doc("b", 0.2, mae=0.7), make_doc("c", 0.3, mae=0.8)]
    for doc in docs:
        doc["primary_metric"] = doc["task"]["primary_metric"] = "mae"
    add(store, *docs)
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert [r["method"] for r in rows] == ["b", "c", "a"]
    assert list(rows[0])[2] == "mae"


def test_delta_against_reference(store):
    add(store, make_doc("pop", 0.25), make_doc("sasrec", 0.30), make_doc("bpr", 0.20))
    board = render_leaderboard(TASK, store, reference="pop")
    (rows,) = table_rows(board.markdown)
    delta = {r["method"]: r["Δ% vs pop"] for r in rows}
    assert delta == {"sasrec": "+20.0%", "pop": "ref", "bpr": "-20.0%"}
    assert not board.notes


def test_relative_metrics_each_get_a_delta_column(store):
    docs = [make_doc("pop", 0.25, hr=0.40), make_doc("sasrec", 0.30, hr=0.30)]
    for doc in docs:
        doc["task"]["relative_metrics"] = ["hr@10", "ndcg@10"]
    add(store, *docs)
    (rows,) = table_rows(render_leaderboard(TASK, store, reference="pop").markdown)
    sasrec = next(r for r in rows if r["method"] == "sasrec")
    assert (sasrec["Δ% hr@10 vs pop"], sasrec["Δ% ndcg@10 vs pop"]) == ("-25.0%", "+20.0%")


def test_missing_reference_gives_na_and_note(store):
    add(store, make_doc("sasrec", 0.30), make_doc("bpr", 0.20))
    board = render_leaderboard(TASK, store, reference="pop")
    (rows,) = table_rows(board.markdown)
    assert {r["Δ% vs pop"] for r in rows} == {"n/a"}
    assert any("`pop`" in note and "n/a" in note and "--method pop" in note for note in board.notes)
    assert "--method pop" in board.markdown


def test_different_protocols_are_never_ranked_together(store):
    k20 = protocol(params__k=20)
    other_data = protocol(dataset_hash="cd" * 16)
    add(store, make_doc("sasrec", 0.30), make_doc("pop", 0.10),
        make_doc("sasrec", 0.50, proto=k20, created="2025-01-02T00:00:00+00:00"),
        make_doc("bpr", 0.20, proto=other_data, created="2024-12-01T00:00:00+00:00"))
    board = render_leaderboard(TASK, store)
    assert len(board.tables) == 3
    tables = table_rows(board.markdown)
    assert [[r["method"] for r in t] for t in tables] == [["sasrec"], ["sasrec", "pop"], ["bpr"]]
    assert all(t[0]["rank"] == "1" for t in tables)  # each protocol ranked on its own
    fingerprint_of = {doc["run_id"]: doc["protocol"]["fingerprint"] for _, doc in store.iter_results(TASK)}
    for table in board.tables:
        assert {fingerprint_of[run_id] for run_id in table.run_ids} == {table.fingerprint}
    assert board.tables[0].fingerprint == k20["fingerprint"]
    (note,) = [n for n in board.notes if "not comparable" in n]
    assert "params.k: 20 vs 10" in note
    assert "dataset_hash: abababab.. vs cdcdcdcd.." in note
    for fp in (k20, other_data, protocol()):
        assert f"`{fp['fingerprint']}`" in board.markdown
    assert "content hash `abababab..`" in board.markdown and "holdout=leave-one-out" in board.markdown


def test_ceiling_rows_come_last_and_are_not_ranked(store):
    add(store, make_doc("oracle", 1.0), make_doc("sasrec", 0.30), make_doc("bpr", 0.20),
        make_doc("upper", 0.9, ceiling=True))
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert [(r["rank"], r["method"]) for r in rows] == [
        ("1", "sasrec"), ("2", "bpr"), ("-", "oracle (ceiling)"), ("-", "upper (ceiling)")]


def test_labels_show_differing_config_keys_and_seeds(store):
    add(store,
        make_doc("sasrec", 0.30, config={"dim": 64, "loss": "ce"}),
        make_doc("sasrec", 0.20, config={"dim": 64, "loss": "bce"}),
        make_doc("bpr", 0.15, seed=1), make_doc("bpr", 0.16, seed=2))
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert [r["method"] for r in rows] == ["sasrec (loss=ce)", "sasrec (loss=bce)", "bpr (seed 2)", "bpr (seed 1)"]


def test_labels_show_the_resolved_value_of_an_option_left_to_a_preset(store):
    preset = make_doc("sft", 0.30, config={"train_examples": None})
    preset["method"]["fitted"] = {"resolved": {"train_examples": 24}}
    add(store, preset, make_doc("sft", 0.20, config={"train_examples": 12}))
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert [r["method"] for r in rows] == ["sft (train_examples=24 by preset)", "sft (train_examples=12)"]


def test_duplicate_run_keeps_newest(store):
    old = make_doc("sasrec", 0.30, created="2025-01-01T00:00:00+00:00")
    new = make_doc("sasrec", 0.35, created="2025-02-01T00:00:00+00:00")
    new["run_id"] = "f" * 12
    add(store, old, new)
    board = render_leaderboard(TASK, store)
    (rows,) = table_rows(board.markdown)
    assert len(rows) == 1 and rows[0]["ndcg@10"].startswith("0.3500")
    assert any(old["run_id"] in note for note in board.notes)


def test_metrics_option_restricts_columns(store):
    add(store, make_doc("sasrec", 0.30, hr=0.5, mae=0.4))
    (rows,) = table_rows(render_leaderboard(TASK, store, metrics=["mae"]).markdown)
    assert list(rows[0])[2:4] == ["ndcg@10", "mae"] and "hr@10" not in rows[0]
    with pytest.raises(RecbenchError, match="recall@5"):
        render_leaderboard(TASK, store, metrics=["recall@5"])


def test_no_results_raises_with_run_command(store, tmp_path):
    with pytest.raises(RecbenchError, match=rf"recbench run --task {TASK} --method"):
        write_leaderboard(TASK, store, out_dir=tmp_path / "boards")
    assert not (tmp_path / "boards").exists()


def test_corrupt_results_file_is_skipped(store, capsys):
    add(store, make_doc("sasrec", 0.30))
    bad = store.root / TASK / "broken" / "abc.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    incomplete = store.root / TASK / "half" / "def.json"
    incomplete.parent.mkdir(parents=True)
    incomplete.write_text(f'{{"schema": "{SCHEMA}", "run_id": "x"}}')
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert [r["method"] for r in rows] == ["sasrec"]
    err = capsys.readouterr().err
    assert "abc.json" in err and "def.json" in err


def test_written_file_is_deterministic_and_links_plots(store, tmp_path):
    sasrec = make_doc("sasrec", 0.30)
    sasrec["reports"] = {"accuracy_by_option": [{"option": 1, "count": 3, "accuracy": 0.5, "chance": 0.25}]}
    sasrec["method"]["fitted"] = {"curve": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]}
    bpr = make_doc("bpr", 0.20, proto=protocol(params__k=20))  # alone in its protocol's table
    bpr["method"]["fitted"] = {"curve": [{"step": 1, "entropy": 0.5}]}  # no loss or reward: no figure
    add(store, make_doc("pop", 0.25), sasrec, bpr)
    out = tmp_path / "boards"
    path = write_leaderboard(TASK, store, out_dir=out, reference="pop")
    assert path == out / f"{TASK}.md"
    first = path.read_text()
    assert write_leaderboard(TASK, ResultStore(store.root), out_dir=out, reference="pop").read_text() == first
    plots = {line.split("](")[1].rstrip(")") for line in first.splitlines() if line.startswith("![")}
    assert all((out / p).read_bytes()[:4] == b"\x89PNG" for p in plots)  # drawn beside the page
    assert sum("-by-option-" in p for p in plots) == 1  # the runs' option plots in one figure
    compared = [line for line in first.splitlines() if line.startswith("![ndcg@10 of every ranked row]")]
    assert len(compared) == 2  # one comparison per protocol table, above its ranking
    assert first.index(compared[0]) < first.index("| rank")
    curves = [line for line in first.splitlines() if "-curves-" in line]  # the training curves of the runs that have one
    assert len(curves) == 1 and (out / curves[0].split("](")[1].rstrip(")")).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["plots", f"{TASK}.md"]  # no temporary files left behind


def test_training_curves_include_stage_sections_and_reward_parts(tmp_path):
    from recbench.leaderboard_sections import curves_plot, training_curves

    doc = make_doc("curec", 0.1)
    doc["method"]["fitted"] = {
        "alignment": {"lr": 1e-4, "curve": [{"step": 1, "rewards/format/mean": 0.25, "reward": 1.0},
                                            {"step": 2, "rewards/format/mean": 0.5, "reward": 1.5}]},
        "correction": {"curve": [{"loss": 0.1, "reward": 2.0}, {"loss": 0.0, "reward": 2.2}]},  # no step: numbered
        "recommender": {"curve": [[2, 0.03], [4, 0.04]]},  # not a list of points: left out
        "resolved": {"lr": 1e-4},
    }
    curves = training_curves(doc)
    assert [label for label, _ in curves] == [" alignment", " correction"]
    assert [q["step"] for q in curves[1][1]] == [1, 2] and curves[1][1][1]["reward"] == 2.2
    path = curves_plot([doc], tmp_path)
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert training_curves(make_doc("pop", 0.1)) == []
    langptune = make_doc("langptune", 0.1)  # its RLSO batches and InfoNCE steps, as top-level lists
    langptune["method"]["fitted"] = {"rlso_curve": [{"loss": 1.6, "reward": 0.10}, {"loss": 0.4, "reward": 0.12}],
                                     "infonce_loss": [2.7, 2.5], "train_loss": 0.3}
    assert [(label, [q.get("reward", q["loss"]) for q in c]) for label, c in training_curves(langptune)] == [
        (" rlso", [0.10, 0.12]), (" infonce", [2.7, 2.5])]
    twin = make_doc("curec_text", 0.1)  # the same cached alignment: its curve is drawn once
    twin["method"]["fitted"] = {"alignment": doc["method"]["fitted"]["alignment"]}
    assert curves_plot([doc, twin], tmp_path / "two").read_bytes() == path.read_bytes()


def test_ablation_tables_arrange_runs_against_a_filtered_reference(store, tmp_path):
    from recbench.ablations import Ablation
    from recbench.errors import RegistrationError
    from recbench.task import TaskSpec

    zero_text = make_doc("zero_shot", 0.20, config={"output": "text", "model": "m"})
    zero_number = make_doc("zero_shot", 0.40, config={"output": "number", "model": "m"})
    sft = make_doc("sft", 0.25, config={"output": "text", "model": None})
    sft["method"]["fitted"] = {"base_model": "m", "resolved": {"train_examples": 24}}
    other_protocol = make_doc("sft", 0.9, proto=protocol(params__k=5), config={"output": "text", "model": None})
    add(store, zero_text, zero_number, sft, other_protocol, make_doc("pop", 0.1))
    spec = TaskSpec.from_dict({
        "name": TASK, "version": 1, "kind": "fullrank", "dataset": "toy", "metrics": ["ndcg@10"],
        "primary_metric": "ndcg@10",
        "ablations": [{"title": "post-training vs zero-shot", "methods": ["sft", "absent_method"],
                       "columns": {"model": "method.fitted.base_model|method.config.model", "pairs": "method.fitted.resolved.train_examples"},
                       "reference": {"method": "zero_shot", "method.config.output": "text"}}],
    })
    board = render_leaderboard(TASK, store, ablations=spec.ablations)
    assert "### Ablation: post-training vs zero-shot" in board.markdown
    tables = table_rows(board.markdown)
    ablation = tables[1]  # under the first protocol's ranking; the k=5 protocol's sft run is in its own table
    assert ablation == [{"run": "sft", "model": "m", "pairs": "24", "Δ% ndcg@10 vs zero_shot (method.config.output=text)": "+25.0%",
                         "ndcg@10": "0.2500", "command": f"`recbench run --task {TASK} --method sft --seed 0`"}]
    with pytest.raises(RegistrationError, match="unknown_key"):
        Ablation.from_dict({"title": "t", "methods": ["a"], "unknown_key": 1}, "spec")
    with pytest.raises(RegistrationError, match="'method' key"):
        Ablation.from_dict({"title": "t", "methods": ["a"], "reference": {"output": "text"}}, "spec")



def test_ablation_reference_can_be_the_run_with_the_same_reasoner(store):
    """``same``: each row against the template run of its own reasoner (the verbalization paper's Tables 1-2)."""
    from recbench.ablations import Ablation
    from recbench.errors import RegistrationError
    from recbench.task import TaskSpec

    template_a = make_doc("template", 0.20, config={"model": "a"})
    template_b = make_doc("template", 0.40, config={"model": "b"})
    rewrite_a = make_doc("rewrite", 0.30, config={"model": "a"})
    rewrite_b = make_doc("rewrite", 0.30, config={"model": "b"})
    rewrite_c = make_doc("rewrite", 0.30, config={"model": "c"})
    add(store, template_a, template_b, rewrite_a, rewrite_b, rewrite_c)
    ablation = Ablation.from_dict({"title": "t", "methods": ["template", "rewrite"], "columns": {"reasoner": "method.config.model"},
                                   "reference": {"method": "template"}, "same": ["reasoner"]}, "spec")
    board = render_leaderboard(TASK, store, ablations=(ablation,))
    rows = table_rows(board.markdown)[1]
    delta = "Δ% ndcg@10 vs template (same reasoner)"
    assert [(r["run"].split(" ")[0], r["reasoner"], r[delta]) for r in rows] == [
        ("template", "a", "ref"), ("template", "b", "ref"),
        ("rewrite", "a", "+50.0%"), ("rewrite", "b", "-25.0%"), ("rewrite", "c", "n/a")]
    with pytest.raises(RegistrationError, match=r"ablation metrics \['p@5'\] are not in metrics"):
        TaskSpec.from_dict({"name": TASK, "version": 1, "kind": "fullrank", "dataset": "toy", "metrics": ["ndcg@10"],
                            "primary_metric": "ndcg@10", "ablations": [{"title": "t", "methods": ["a"], "metrics": ["p@5"]}]})
    with pytest.raises(RegistrationError, match="not among its columns"):
        Ablation.from_dict({"title": "t", "methods": ["a"], "reference": {"method": "a"}, "same": ["reasoner"]}, "spec")


def test_ablation_quotes_an_output_of_every_run_for_the_same_examples(store):
    """``show``: the verbalization paper's Table 3, the same test users' verbalizations side by side."""
    from recbench.ablations import Ablation

    template, rewrite = make_doc("template", 0.20), make_doc("rewrite", 0.30)
    store.write(template, [{"key": k, "metrics": {}, "verbalization": f"t{k} line one\nline two"} for k in ("10", "2", "3", "4")])
    store.write(rewrite, [{"key": k, "metrics": {}, "verbalization": "r" + k * 700} for k in ("2", "3", "4")])
    ablation = Ablation.from_dict({"title": "t", "methods": ["template", "rewrite"], "show": "verbalization",
                                   "show_count": 2}, "spec")
    markdown = render_leaderboard(TASK, store, ablations=(ablation,)).markdown
    quoted = markdown[markdown.index("<summary>verbalization"):]
    assert "for the same 2 test examples" in quoted and "Example `2`" in quoted and "Example `3`" in quoted
    assert "Example `4`" not in quoted and "Example `10`" not in quoted  # only keys every run has, the first two
    assert "- **template**: t2 line one line two" in quoted
    assert "- **rewrite**: r" + "2" * 598 + "…" in quoted  # cut to 600 characters


def test_ablation_quotes_each_runs_case_study_records(store):
    """``cases``: records a method keeps in its results file (CURec's patterns and reasons before and after correction)."""
    from recbench.ablations import Ablation

    curec, other = make_doc("curec", 0.3), make_doc("pop", 0.1)
    curec["method"]["fitted"] = {"case_study": [{"user": 7, "pattern_before": "likes | dramas <think>", "pattern_after": "x" * 500}]}
    add(store, curec, other)
    ablation = Ablation.from_dict({"title": "t", "methods": ["curec", "pop"], "cases": "method.fitted.case_study"}, "spec")
    markdown = render_leaderboard(TASK, store, ablations=(ablation,)).markdown
    quoted = markdown[markdown.index("<summary>Case study: case study of each run"):]
    assert "**curec**:" in quoted and "**pop**" not in quoted  # a run without records gets no entry
    assert "- case 1, user: 7" in quoted and "- case 1, pattern_before: likes / dramas &lt;think&gt;" in quoted
    assert "- case 1, pattern_after: " + "x" * 399 + "…" in quoted

# --- trust flags, paired significance and seed aggregates ------------------------------------------


def _with_examples(store, doc, values):
    store.write(doc, [{"key": f"u{i}", "metrics": {"ndcg@10": v}} for i, v in enumerate(values)])


def test_rows_above_the_ceiling_in_process_dirty_or_third_party_are_flagged(store):
    honest = make_doc("pop", 0.10)
    honest["execution"] = {"isolation": "worker"}
    cheat = make_doc("cheat", 0.95)  # above the oracle's 0.60
    perfect = make_doc("perfect", 1.0, proto=None, config={"dim": 9})  # at the metric's maximum
    dirty = make_doc("dirty", 0.20)
    dirty["environment"]["git"]["dirty"] = True
    third = make_doc("shop", 0.30)
    third["method"]["plugin"] = "recbench-shop 0.2.0"
    oracle = make_doc("oracle", 0.60, config={}, ceiling=True)
    for doc in (cheat, perfect, dirty, third):
        doc["execution"] = {"isolation": "worker"}
    add(store, honest, cheat, perfect, dirty, third, oracle, make_doc("debugged", 0.15))
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    flags = {r["method"]: r["flags"] for r in rows}
    assert flags["cheat"] == "above ceiling (ndcg@10)" and flags["perfect"] == "above ceiling (ndcg@10)"
    assert flags["pop"] == "-" and flags["dirty"] == "dirty tree" and flags["shop"] == "plugin: recbench-shop 0.2.0"
    assert flags["debugged"] == "in-process" and flags["oracle (ceiling)"] == "-"
    assert "*above ceiling*: a value above the oracle row" in render_leaderboard(TASK, store).markdown


def test_an_llm_row_whose_replies_mostly_named_no_answer_is_flagged_with_the_share(store):
    mute, half, talker = make_doc("mute", 0.20), make_doc("half", 0.25), make_doc("talker", 0.30)
    mute["diagnostics"], half["diagnostics"] = {"valid_output_rate": 0.135}, {"valid_output_rate": 0.5}
    talker["diagnostics"] = {"valid_output_rate": 1.0}
    for doc in (mute, half, talker):
        doc["execution"] = {"isolation": "worker"}
    add(store, mute, half, talker)
    markdown = render_leaderboard(TASK, store).markdown
    flags = {r["method"]: r["flags"] for r in table_rows(markdown)[0]}
    assert flags == {"mute": "fallback answers (86%)", "half": "-", "talker": "-"}
    assert "*fallback answers*: under half of the model's replies" in markdown


def test_a_newer_run_whose_preset_resolved_differently_supersedes_the_older_and_says_how(store):
    old = make_doc("grpo", 0.20, created="2025-01-01T00:00:00+00:00")
    new = make_doc("grpo", 0.25, created="2025-02-01T00:00:00+00:00")
    same = make_doc("ease", 0.30, created="2025-01-01T00:00:00+00:00")
    again = make_doc("ease", 0.30, created="2025-02-01T00:00:00+00:00")
    old["method"]["fitted"] = {"resolved": {"epochs": 1.0, "lr_grid": [0.0001], "train_examples": 16}}
    new["method"]["fitted"] = {"resolved": {"epochs": 2.0, "lr_grid": [0.001], "train_examples": 16}}
    for doc, run_id in ((old, "a" * 12), (new, "b" * 12), (same, "c" * 12), (again, "d" * 12)):
        doc["run_id"], doc["execution"] = run_id, {"isolation": "worker"}
    add(store, old, new, same, again)
    markdown = render_leaderboard(TASK, store).markdown
    assert {r["method"] for r in table_rows(markdown)[0]} == {"grpo", "ease"}
    assert (f"Run `{'a' * 12}` of grpo is superseded by run `{'b' * 12}`: the same options, protocol and seed, but the "
            "preset resolved differently (epochs 1.0 -> 2.0, lr_grid [0.0001] -> [0.001])") in markdown
    assert f"Run `{'c' * 12}` of ease repeats run `{'d' * 12}` (same protocol, config and seed)" in markdown


def test_an_rl_row_whose_groups_never_varied_is_flagged(store):
    flat, learning = make_doc("flat", 0.20), make_doc("learning", 0.25)
    flat["method"]["fitted"] = {"curve": [{"step": 1, "reward": 0.1, "frac_reward_zero_std": 1.0},
                                          {"step": 2, "reward": 0.2, "frac_reward_zero_std": 1.0}]}
    learning["method"]["fitted"] = {"curve": [{"step": 1, "reward": 0.1, "frac_reward_zero_std": 1.0},
                                              {"step": 2, "reward": 0.2, "frac_reward_zero_std": 0.5}]}
    for doc in (flat, learning):
        doc["execution"] = {"isolation": "worker"}
    add(store, flat, learning)
    markdown = render_leaderboard(TASK, store).markdown
    flags = {r["method"]: r["flags"] for r in table_rows(markdown)[0]}
    assert flags == {"flat": "no RL signal", "learning": "-"}
    assert "*no RL signal*: in every RL training step" in markdown


def test_a_perfect_score_is_not_flagged_where_the_oracle_row_is_perfect_too(store):
    learned = make_doc("sft", 1.0)
    learned["execution"] = {"isolation": "worker"}
    add(store, learned, make_doc("oracle", 1.0, config={}, ceiling=True))
    (rows,) = table_rows(render_leaderboard(TASK, store).markdown)
    assert {r["method"]: r["flags"] for r in rows}["sft"] == "-"


def test_paired_differences_against_the_reference_with_holm(store):
    rng = np.random.default_rng(0)
    base = rng.random(200)
    better = np.clip(base + 0.2, 0, 1)
    same = base + rng.normal(0, 0.01, 200)
    for name, values in (("pop", base), ("better", better), ("same", same)):
        doc = make_doc(name, float(np.mean(values)))
        _with_examples(store, doc, values)
    board = render_leaderboard(TASK, store, reference="pop").markdown
    (rows,) = table_rows(board)
    cell = {r["method"]: r["Δ ndcg@10 vs pop, paired"] for r in rows}
    assert cell["pop"] == "ref"
    assert cell["better"] == f"{np.mean(better - base):+.4f}"  # significant: no n.s. mark
    assert cell["same"] == f"{np.mean(same - base):+.4f} (n.s.)"
    (paired,) = table_rows(board, first=("row",))[:1]
    detail = {r["row"]: r for r in paired}
    assert float(detail["better"]["p (sign-flip)"]) < 0.001 and detail["better"]["significant at 0.05"] == "yes"
    assert float(detail["same"]["p (Holm)"]) >= float(detail["same"]["p (sign-flip)"]) > 0.05
    low, high = (float(x) for x in detail["better"]["95% CI (paired bootstrap)"].strip("[]").split(", "))
    assert low < np.mean(better - base) < high


def test_seeds_aggregate_as_mean_and_sd(store):
    values = [0.10, 0.20, 0.30]
    add(store, *(make_doc("sasrec", v, seed=s) for s, v in enumerate(values)), make_doc("pop", 0.05))
    board = render_leaderboard(TASK, store).markdown
    seeds = [t for t, h in _tables(board) if h[:2] == ["method", "seeds"]]
    assert seeds and seeds[0] == [{"method": "sasrec", "seeds": "0, 1, 2", "ndcg@10": "0.2000 ± 0.1000"}]


def test_stats_known_answers():
    from recbench.stats import holm, paired_difference

    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    constant = paired_difference(np.full(100, 0.6), np.full(100, 0.5))
    assert constant.mean == pytest.approx(0.1) and constant.ci_low == pytest.approx(0.1) == constant.ci_high
    assert constant.p_value == pytest.approx(1 / 2001)
    null = paired_difference(np.zeros(50), np.zeros(50))
    assert null.mean == 0 and null.p_value == 1.0 and not null.significant


def test_every_row_shows_its_inference_time_per_example(store):
    """The CURec paper's Table 4 for every method: predict time over test examples, batch and hardware."""
    slow, fast = make_doc("llm", 0.30), make_doc("pop", 0.10)
    slow["timing"].update(predict_s=250.0, predict_batch=8)
    slow["environment"]["hardware"] = {"cpu_count": 2, "gpu": None}
    fast["environment"]["hardware"] = {"cpu_count": 16, "gpu": "NVIDIA H200"}
    add(store, slow, fast)
    board = render_leaderboard(TASK, store)
    (latency,) = [t for t, h in _tables(board.markdown) if "ms / example" in h]
    assert latency == [
        {"row": "llm", "ms / example": "2,500", "batch": "8", "examples": "100", "hardware": "CPU, 2 cores"},
        {"row": "pop", "ms / example": "2.5", "batch": "-", "examples": "100", "hardware": "GPU NVIDIA H200"},
    ]


# --- parameter sweeps (recbench.param_sweeps) ------------------------------------------------------

SWEEP_DEFAULTS = {"task_version": 1, "dataset": "toy", "params": {"k": 10, "train_fraction": 1.0}}


def _sweep_doc(method, ndcg, fraction, seed=0, created="2025-01-02T00:00:00+00:00", hr=None, **changes):
    """A run at ``train_fraction=fraction``; the split description follows the parameter, as a task kind's does."""
    proto = protocol(params__train_fraction=fraction, split__train_fraction=f"{fraction} of training kept", **changes)
    doc = make_doc(method, ndcg, hr=hr, proto=proto, seed=seed, created=created)
    if fraction != 1.0:
        doc["command"] = f"recbench run --task {TASK} --method {method} --set task.train_fraction={fraction} --seed {seed}"
    return doc


def _sweep(**extra):
    from recbench.param_sweeps import ParamSweep

    return ParamSweep.from_dict({"title": "training-data ratio", "param": "train_fraction", "methods": ["emb_cl", "sasrec"],
                                 "values": [0.2, 0.5, 0.8], **extra}, "spec")


def test_a_param_sweep_plots_the_runs_that_differ_from_the_default_protocol_in_that_parameter_alone(store, tmp_path):
    from recbench.param_sweeps import sweep_points

    add(store,
        _sweep_doc("emb_cl", 0.30, 1.0), _sweep_doc("sasrec", 0.40, 1.0),  # the default runs: the points at 1.0
        _sweep_doc("emb_cl", 0.20, 0.5, seed=0),
        _sweep_doc("emb_cl", 0.22, 0.5, seed=1, created="2025-01-03T00:00:00+00:00"),  # two seeds: their mean
        _sweep_doc("sasrec", 0.25, 0.5),
        _sweep_doc("sasrec", 0.90, 0.2, params__k=5),  # another parameter differs too: not a point
        _sweep_doc("emb_cl", 0.90, 0.2, dataset="other"),  # another dataset: not a point
        _sweep_doc("emb_cl", 0.90, 0.2, tie_seed=3),  # another tie order: not a point
        _sweep_doc("pop", 0.10, 0.5))  # not a method of the sweep
    docs = [doc for _, doc in store.iter_results(TASK)]
    points, left_out = sweep_points(_sweep(), docs, SWEEP_DEFAULTS, "ndcg@10")
    assert [(p.method, p.value, round(p.mean, 6), len(p.runs)) for p in points] == [
        ("emb_cl", 0.5, 0.21, 2), ("emb_cl", 1.0, 0.3, 1), ("sasrec", 0.5, 0.25, 1), ("sasrec", 1.0, 0.4, 1)]
    assert left_out == 0

    out = tmp_path / "boards"
    markdown = render_leaderboard(TASK, store, out_dir=out, param_sweeps=(_sweep(),), defaults=SWEEP_DEFAULTS).markdown
    section = markdown[markdown.index("## Parameter sweep: training-data ratio"):]
    (plot,) = [line for line in section.splitlines() if line.startswith("![ndcg@10 against train_fraction](")]
    assert (out / plot.split("](")[1].rstrip(")")).read_bytes()[:4] == b"\x89PNG"
    (rows,) = table_rows(section, first=("method",))
    assert [(r["method"], r["train_fraction"], r["ndcg@10"], r["seeds"]) for r in rows] == [
        ("emb_cl", "0.5", "0.2100", "0, 1"), ("emb_cl", "1.0 (default)", "0.3000", "0"),
        ("sasrec", "0.5", "0.2500", "0"), ("sasrec", "1.0 (default)", "0.4000", "0")]
    assert rows[0]["command"] == f"`recbench run --task {TASK} --method emb_cl --set task.train_fraction=0.5 --seed 1`"  # newest
    assert rows[1]["command"] == f"`recbench run --task {TASK} --method emb_cl --seed 0`"  # the default run's own
    # proposed values without a run get a command each; 0.5 has its runs, so it is not proposed
    assert f"- `recbench run --task {TASK} --method emb_cl,sasrec --set task.train_fraction=0.2`" in section
    assert "task.train_fraction=0.5`" not in section and "train_fraction=0.8`" in section


def test_protocols_holding_only_sweep_points_are_not_leaderboards_of_their_own(store, tmp_path):
    add(store, _sweep_doc("emb_cl", 0.30, 1.0), _sweep_doc("pop", 0.10, 1.0),
        _sweep_doc("emb_cl", 0.20, 0.5), _sweep_doc("sasrec", 0.25, 0.5),  # only sweep points: the figure's
        _sweep_doc("emb_cl", 0.21, 0.2), _sweep_doc("pop", 0.05, 0.2))  # pop is no sweep method: a table stays
    markdown = render_leaderboard(TASK, store, out_dir=tmp_path, param_sweeps=(_sweep(),), defaults=SWEEP_DEFAULTS).markdown
    fingerprints = {fraction: protocol(params__train_fraction=fraction,
                                       split__train_fraction=f"{fraction} of training kept")["fingerprint"]
                    for fraction in (1.0, 0.5, 0.2)}
    heads = [line for line in markdown.splitlines() if line.startswith("## ") and "protocol" in line]
    assert [any(fingerprints[f][:16] in h for h in heads) for f in (1.0, 0.5, 0.2)] == [True, False, True]
    assert "2 runs at other values of a swept task parameter (train_fraction) are shown in their parameter sweep" in markdown
    section = markdown[markdown.index("## Parameter sweep"):]
    assert "| sasrec   | 0.5 " in section  # still plotted


def test_a_param_sweep_without_runs_off_the_default_says_so_and_gives_the_commands(store, tmp_path):
    add(store, _sweep_doc("emb_cl", 0.30, 1.0, hr=0.5), _sweep_doc("sasrec", 0.40, 1.0, hr=0.6))
    out = tmp_path / "boards"
    markdown = render_leaderboard(TASK, store, out_dir=out, param_sweeps=(_sweep(metric="hr@10"),),
                                  defaults=SWEEP_DEFAULTS).markdown
    section = markdown[markdown.index("## Parameter sweep"):]
    assert "No run differs from the default protocol in `train_fraction` alone yet, so there is no curve." in section
    assert "against train_fraction](" not in section and not list((out / "plots").glob("*-sweep-*"))  # no curve, no plot
    (rows,) = table_rows(section, first=("method",))  # the default points, in the sweep's metric
    assert [(r["method"], r["train_fraction"], r["hr@10"]) for r in rows] == [
        ("emb_cl", "1.0 (default)", "0.5000"), ("sasrec", "1.0 (default)", "0.6000")]
    assert [line for line in section.splitlines() if line.startswith("- `")] == [
        f"- `recbench run --task {TASK} --method emb_cl,sasrec --set task.train_fraction={v}`" for v in (0.2, 0.5, 0.8)]


def test_param_sweep_specs_are_checked_where_they_are_read():
    from recbench.errors import RegistrationError
    from recbench.param_sweeps import ParamSweep
    from recbench.registry import Registry
    from recbench.task import TaskSpec

    with pytest.raises(RegistrationError, match=r"param_sweeps keys \['parameter'\] are not known; valid keys: .*'param'"):
        ParamSweep.from_dict({"title": "t", "parameter": "k", "methods": ["a"]}, "spec")
    with pytest.raises(RegistrationError, match="needs a title, a param and a non-empty methods list"):
        ParamSweep.from_dict({"title": "t", "param": "k", "methods": []}, "spec")
    base = {"name": TASK, "version": 1, "kind": "fullrank", "dataset": "ml-100k", "metrics": ["ndcg@10"],
            "primary_metric": "ndcg@10"}
    with pytest.raises(RegistrationError, match=r"param_sweeps metrics \['hr@5'\] are not in metrics"):
        TaskSpec.from_dict({**base, "param_sweeps": [{"title": "t", "param": "k", "methods": ["a"], "metric": "hr@5"}]})
    from recbench.manager import load_registry

    loaded = load_registry()
    registry = Registry()
    registry.task_kinds, registry.datasets = loaded.task_kinds, loaded.datasets
    registry.tasks.add(TaskSpec.from_dict({**base, "param_sweeps": [{"title": "t", "param": "train_frac", "methods": ["a"]}]}),
                       "test")
    with pytest.raises(RegistrationError, match=r"sweeps 'train_frac', which is not a parameter of task kind 'fullrank'; "
                                                r"set param to one of \["):
        registry.check_tasks()


def test_every_task_specs_param_sweeps_name_registered_methods():
    from recbench.manager import load_registry

    registry = load_registry()
    sweeps = [(name, s) for name, spec in registry.tasks.entries.items() for s in spec.param_sweeps]
    assert ("session", "train_fraction") in [(name, s.param) for name, s in sweeps]
    for name, sweep in sweeps:
        assert set(sweep.methods) <= set(registry.methods.names()), (name, sweep.title)


def test_the_store_gives_each_methods_newest_result_whatever_its_file_name(store):
    newer = make_doc("grpo", 0.25, created="2025-02-01T00:00:00+00:00")
    older = make_doc("grpo", 0.20, created="2025-01-01T00:00:00+00:00", seed=1)
    ease = make_doc("ease", 0.30)
    newer["run_id"], older["run_id"] = "a" * 12, "f" * 12  # the older run's file name sorts last
    add(store, newer, older, ease)
    newest = store.newest_by_method(TASK)
    assert set(newest) == {"grpo", "ease"}
    assert newest["grpo"]["run_id"] == "a" * 12
    assert store.newest_by_method("no-such-task") == {}
