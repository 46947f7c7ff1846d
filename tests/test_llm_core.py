"""The post-training core: task interfaces, rewards (the task's own metrics), the trainer registry.

Rewards are checked against values computed by hand; every built-in task kind's interface must
read its own gold reply as the right answer; GRPO and RLOO take a few real steps on the tiny
random model; and no LLM method module names a task.
"""

from __future__ import annotations

import io
import json
import math
import re
import tokenize
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.errors import ConfigError, UnknownNameError
from recbench.llm.interface import PromptStyle, read_reply
from recbench.llm.rewards import Combined, RewardError, RewardSpec, build_reward, checked, register_reward, REWARDS
from recbench.llm.trainers import get_trainer
from recbench.testing import tiny_task

ROOT = Path(__file__).resolve().parents[1]


def choice_row(output="number", gold=(1,), n=3, prefix="<answer>"):
    return {"reader": "choice", "output": output, "options": [f"Movie {c} (1990) (Drama)" for c in "ABC"][:n],
            "gold": list(gold), "propensity": 1.0 / n, "forced_prefix": prefix}


# --- rewards -------------------------------------------------------------------------------------


def test_metric_reward_computes_the_tasks_metric_by_hand():
    row = choice_row()  # gold is option 2 of 3 (index 1)
    replies = ["<answer>2</answer>", "<answer>3</answer>", "<answer>N</answer>"]
    assert build_reward(RewardSpec("metric", args={"name": "recall@1"}))(replies, [row] * 3) == [1.0, 0.0, 0.0]
    # IPS: a hit counts 1 / propensity = 3 options
    assert build_reward(RewardSpec("metric", args={"name": "ips"}))(replies, [row] * 3) == [3.0, 0.0, 0.0]
    # MRR: "3" puts option 3 first, then 1, 2 in order: the gold sits third; an unreadable reply ranks nothing
    assert build_reward(RewardSpec("metric", args={"name": "mrr@3"}))(replies, [row] * 3) == [1.0, pytest.approx(1 / 3), 0.0]
    # subset suffixes of task metric names are dropped: the reward is per example
    assert build_reward(RewardSpec("metric", args={"name": "recall@1[discovery]"}))(replies[:1], [row]) == [1.0]


def test_metric_reward_on_titles_grounds_them_and_scores_ndcg(tmp_path):
    catalog = tmp_path / "catalog.json"
    pd.DataFrame({"title": ["Alpha Road", "Beta Garden", "Gamma Tower"], "year": [1990, 1991, 1995]}).to_json(
        catalog, orient="records")
    row = {"reader": "titles", "catalog": str(catalog), "threshold": 80.0, "k": 5, "gold": [0, 2]}
    ndcg = build_reward(RewardSpec("metric", args={"name": "ndcg@5"}))
    both = "['Alpha Road (1990)', 'Gamma Tower (1995)']"
    one = "['Gamma Tower (1995)', 'Beta Garden (1991)', 'Zzzz Qqqq']"
    ideal = 1 + 1 / math.log2(3)
    assert ndcg([both, one, "nothing here"], [row] * 3) == [pytest.approx(1.0), pytest.approx(1 / ideal), 0.0]
    assert read_reply(one, row).ranked == (2, 1)  # the made-up title grounds to nothing and is dropped


def test_format_legal_and_dense_rank_rewards():
    think = choice_row(output="think", prefix="<think>")
    replies = ["<think>likes drama</think><answer>2</answer>", "<think>hm<answer>2</answer>", "<think></think><answer>7</answer>"]
    assert build_reward(RewardSpec("format"))(replies, [think] * 3) == [1.0, 0.0, 1.0]
    assert build_reward(RewardSpec("legal"))(replies, [think] * 3) == [1.0, 1.0, 0.0]
    text = choice_row(output="text", prefix="Prediction: <option>")
    rank = build_reward(RewardSpec("rank"))
    # the gold option named in full ranks first; a reply naming only "Movie ... (1990)" ties all options
    values = rank(["Prediction: <option> Movie B (1990) (Drama) </option>", "Prediction: <option> Movie C", "zzz"], [text] * 3)
    assert values[0] == 1.0 and 0 < values[1] < 1 and values[2] == 0.0
    number = choice_row()
    assert rank(["<answer>2</answer>", "<answer>1</answer>", "<answer>9</answer>"], [number] * 3) == [1.0, 0.1, 0.0]


def test_reward_specs_parse_sum_and_fail_clearly():
    assert RewardSpec.parse("0.5*metric:name=ndcg@5") == RewardSpec("metric", 0.5, {"name": "ndcg@5"})
    assert RewardSpec.parse("format") == RewardSpec("format", 1.0, {})
    total = Combined([RewardSpec("legal", 0.5), RewardSpec("metric", 1.0, {"name": "recall@1"})])
    values = total(["<answer>2</answer>", "<answer>3</answer>", "x"], [choice_row()] * 3)
    assert values.tolist() == [1.5, 0.5, 0.0] and total.parts["legal"].tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(UnknownNameError, match="Did you mean 'metric'"):
        build_reward(RewardSpec("metrics"))
    with pytest.raises(ConfigError, match="bad arguments"):
        build_reward(RewardSpec("format", args={"nope": 1}))
    with pytest.raises(RewardError, match="returned 2 values for 3 replies"):
        checked("short", [1.0, 2.0], 3)
    with pytest.raises(RewardError, match="nan for reply 1"):
        checked("nan", [1.0, float("nan")], 2)


def test_a_registered_reward_is_built_by_name(monkeypatch):
    monkeypatch.setitem(REWARDS, "length", lambda scale="1": lambda replies, rows: [len(r) / float(scale) for r in replies])
    assert build_reward(RewardSpec("length", args={"scale": "2"}))(["abcd"], [{}]) == [2.0]
    with pytest.raises(Exception, match="already registered"):
        register_reward("metric", lambda: None)


# --- trainers ------------------------------------------------------------------------------------


def test_trainer_registry_checks_names_options_and_rows():
    assert {get_trainer(n).name for n in ("sft", "dpo", "grpo", "rloo")} == {"sft", "dpo", "grpo", "rloo"}
    with pytest.raises(UnknownNameError, match="Did you mean 'grpo'"):
        get_trainer("grop")
    with pytest.raises(ConfigError, match="unknown option"):
        get_trainer("sft").config({"beta": 0.1})  # DPO's option is not SFT's
    with pytest.raises(ValueError, match="num_generations must be at least 2"):
        get_trainer("grpo").config({"num_generations": 1})
    with pytest.raises(ConfigError, match="lack \\['chosen', 'rejected'\\]"):
        get_trainer("dpo").check_rows([{"prompt": "p", "completion": "c"}])


# --- task interfaces -----------------------------------------------------------------------------


def _round_trip(task, data, output):
    interface = data.fit.llm
    style = PromptStyle(output=output, budget=200)
    examples, targets = data.fit.train_examples.take(np.arange(6)), data.fit.train_targets.take(np.arange(6))
    prompts = interface.prompts(examples, style)
    gold = interface.gold(examples, targets, prompts, style)
    predictions = interface.predictions(examples, prompts, gold, style)
    ranked = np.asarray(interface.ranked_items(examples, predictions))
    for row in range(len(examples)):
        assert ranked[row, 0] in set(targets.items_of(row).tolist()), (output, gold[row])
    rows = interface.answer_rows(examples, targets, prompts, style)
    reward = build_reward(RewardSpec("metric", args={"name": interface.selection_metric.split("[")[0]}))
    assert all(v > 0 for v in reward(gold, [{**r, "forced_prefix": p.forced_prefix} for r, p in zip(rows, prompts)]))
    rejected = interface.rejected(examples, targets, prompts, style, np.random.default_rng(0))
    assert all(r is None or r != g for r, g in zip(rejected, gold))


@pytest.mark.parametrize("kind,output", [("rerank", "text"), ("rerank", "number"), ("rerank", "think"),
                                         ("artwork", "text"), ("artwork", "number"), ("topk", "text")])
def test_each_task_kind_reads_its_own_gold_reply_as_right(kind, output):
    task, data = tiny_task(kind)
    assert data.fit.llm is not None and data.fit.train_examples is not None and len(data.fit.train_examples) > 5
    _round_trip(task, data, output)


def test_learnability_task_has_exactly_one_candidate_of_the_historys_genre():
    from recbench.plugins.datasets.genre_match import make_genre_match
    from recbench.runner import prepare_task_data
    from recbench.task import TaskSpec
    from recbench.tasks.learnability import LearnabilityTask

    catalog = make_genre_match(n_users=60, items_per_genre=10)
    spec = TaskSpec.from_file(ROOT / "tasks" / "learnability.toml")
    task = LearnabilityTask(spec)
    data = task.build(catalog)
    genre = catalog.items["genres"].to_numpy()
    test, targets = data.test_inputs, data.test_targets
    assert len(test) == 12 and len(data.fit.train_examples) == 36
    for row in range(len(test)):
        history_genres = set(genre[test.histories.items_of(row)])
        assert len(history_genres) == 1
        matching = [c for c in test.candidates[row] if genre[c] in history_genres]
        assert matching == [targets.items_of(row)[0]]
    held_out = set(zip(data.fit.train["user"], data.fit.train["item"]))
    assert not any((test.users[r], targets.items_of(r)[0]) in held_out for r in range(len(test)))
    _round_trip(task, data, "number")


def test_no_llm_method_module_names_a_task():
    """Methods read the task through its interface: no task name in their code (docstrings and comments aside)."""
    names = re.compile(r"\b(artwork|rerank|topk|fullrank|learnability)\b(?!('s)? paper)")  # "the artwork paper" is a paper
    files = [*sorted((ROOT / "plugins" / "llm").glob("*.py")), ROOT / "harness/llm/method.py", ROOT / "harness/llm/recipe.py"]
    for path in files:
        tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
        for i, tok in enumerate(tokens):
            if tok.type == tokenize.COMMENT:
                continue
            if tok.type == tokenize.STRING and (i == 0 or tokens[i - 1].type in (tokenize.INDENT, tokenize.NEWLINE, tokenize.NL)):
                continue  # a docstring
            if tok.type in (tokenize.NAME, tokenize.STRING):
                assert not names.search(tok.string), f"{path.name}:{tok.start[0]} names a task: {tok.string!r}"


# --- on-policy trainers with the tiny random model ------------------------------------------------


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("trainer", ["grpo", "rloo"])
def test_on_policy_trainers_take_steps_and_log_rewards(tmp_path, trainer):
    from transformers import AutoTokenizer

    from recbench.llm.models import resolve_model
    from recbench.llm.training import LOG_FILE, TrainJob, run_job

    base = resolve_model("tiny-random-llama").path
    tokenizer = AutoTokenizer.from_pretrained(base)
    row = choice_row()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Pick 1, 2 or 3."}], tokenize=False,
                                           add_generation_prompt=True) + row["forced_prefix"]
    rows = [{"prompt": prompt, "answer_row": json.dumps(row)} for _ in range(4)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = {"rewards": ({"name": "metric", "weight": 1.0, "args": {"name": "recall@1"}},
                           {"name": "legal", "weight": 0.5, "args": {}}),
               "num_generations": 2, "prompts_per_step": 2, "max_completion_length": 4, "beta": 0.0}
    job = TrainJob(trainer, str(base), str(tmp_path / "rows.jsonl"), lr=1e-3, batch_size=1, options=options,
                   gradient_checkpointing=False)
    run_job(job, tmp_path / "out")
    log = json.loads((tmp_path / "out" / LOG_FILE).read_text())
    assert log["steps"] == 2 and (tmp_path / "out" / "adapter_model.safetensors").is_file()
    assert all("reward" in p and "rewards/metric/mean" in p and "rewards/legal/mean" in p for p in log["curve"])


def test_bad_recipe_settings_fail_before_any_training():
    from recbench.config import build_config
    from recbench.plugins.llm.grpo import GRPO
    from recbench.plugins.llm.sft import SFT

    with pytest.raises((ValueError, ConfigError), match="preset"):
        build_config(SFT.Config, {"preset": "huge"}, owner="method 'sft'")
    with pytest.raises(UnknownNameError, match="unknown reward 'acuracy'"):
        GRPO.Config(rewards=("acuracy",)).reward_specs("recall@1")
    method = SFT(SFT.Config())

    class Tokenizer:
        model_max_length = 8

        def __call__(self, text, add_special_tokens=False):
            return type("Encoded", (), {"input_ids": text.split()})()

    method.tokenizer = Tokenizer()
    method.count_tokens = lambda text: len(method.tokenizer(text).input_ids)
    method.check_lengths([{"prompt": [{"role": "user", "content": "short prompt"}]}])
    with pytest.raises(ConfigError, match="longer than the model's context of 8 tokens"):
        method.check_lengths([{"prompt": [{"role": "user", "content": "a prompt of more than eight words in all of it"}]}])


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("kind", ["rerank", "topk"])
@pytest.mark.parametrize("recipe", ["sft", "dpo", "grpo"])
def test_recipes_train_and_answer_on_rerank_and_topk(kind, recipe):
    """The same recipe, no task-specific code: trains on the task's own examples, answers its contract."""
    from dataclasses import replace

    from recbench.manager import load_registry

    task, data = tiny_task(kind)
    method_cls = load_registry().methods.get(recipe)
    settings = dict(model="tiny-random-llama", train_examples=4, valid_examples=3, lr_grid=(1e-2,), max_history_tokens=24,
                    train_batch_size=2, max_new_tokens=6, cache=False)
    if recipe == "grpo":
        settings.update(num_generations=2, prompts_per_step=2, beta=0.0)
    method = method_cls(method_cls.Config(**settings))
    method.fit(data.fit)
    fitted = method.describe()
    selection = data.fit.llm.selection_metric
    assert fitted["trainer"] == recipe and f"valid_{selection}" in fitted and fitted["curve"]
    batch = data.test_inputs.take(np.arange(3))
    checked = task.contract().validate(method.predict(batch, task.contract()), batch, data.fit.catalog, recipe)
    assert checked.items.shape[0] == 3


@pytest.mark.usefixtures("one_torch_thread")
def test_grpo_can_start_from_the_sft_recipes_checkpoint():
    """start=sft: the SFT run (with start_examples) is fitted first and the policy continues its checkpoint."""
    from recbench.llm.training import PARENT_FILE, checkpoints_dir
    from recbench.plugins.llm.grpo import GRPO

    task, data = tiny_task("rerank")
    method = GRPO(GRPO.Config(model="tiny-random-llama", train_examples=4, valid_examples=3, lr_grid=(1e-2,),
                              max_history_tokens=24, train_batch_size=2, max_new_tokens=6, cache=False, num_generations=2,
                              prompts_per_step=2, beta=0.0, start="sft", start_examples=2))
    assert method.start_recipe().config.train_examples == 2 and method.start_recipe().config.output == "number"
    method.fit(data.fit)
    fitted = method.describe()
    assert fitted["start"] == "sft" and fitted["start_train_rows"] == 2 and fitted["start_checkpoint"].startswith("sft-")
    parent = json.loads((checkpoints_dir() / fitted["checkpoint"] / PARENT_FILE).read_text())["path"]
    assert Path(parent).name == fitted["start_checkpoint"]


def test_title_gold_lists_survive_apostrophes():
    from types import SimpleNamespace

    from recbench.examples import CatalogView, Targets
    from recbench.llm.interface import TitleList
    from recbench.llm.parsing import parse_title_list

    items = pd.DataFrame({"item_id": [1, 2], "title": ["Schindler's List", "Back\\slash"], "year": [1993, 1990], "genres": ["", ""]})
    interface = TitleList(CatalogView("c", items, pd.DataFrame({"user_id": ["1"]})), SimpleNamespace(k=5))
    gold = interface.gold(None, Targets.from_lists([[0, 1]]), [None], PromptStyle())
    assert gold[0].startswith("['")  # the prompt's forced prefix
    assert parse_title_list(gold[0]).titles == ["Schindler's List (1993)", "Back\\slash (1990)"]


def test_an_interrupted_build_is_never_trusted_and_its_leftovers_are_removed(tmp_path):
    from recbench.llm.models import ensure_built

    folder = tmp_path / "sft-abc"
    dead = tmp_path / ".sft-abc.building-999999999-deadbeef"  # no such process
    dead.mkdir()
    (dead / "adapter_model.safetensors").write_bytes(b"half")
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"half")  # no marker: the build never finished
    calls = []

    def build(staging):
        calls.append(staging)
        (staging / "adapter_model.safetensors").write_bytes(b"whole")
        return {"ok": True}

    path, provenance = ensure_built(folder, {"recipe": 1}, build, verify=True)
    assert calls and provenance == {"ok": True} and (path / "adapter_model.safetensors").read_bytes() == b"whole"
    assert not dead.exists()
    assert ensure_built(folder, {"recipe": 1}, build, verify=True)[1] == {"ok": True} and len(calls) == 1  # reused


def test_the_training_curve_keeps_rl_and_dpo_signals_and_drops_the_rest():
    from recbench.llm.training import curve

    history = [{"step": 1, "loss": 0.7, "rewards/margins": 0.1, "logps/chosen": -2.9, "logps/rejected": -3.0,
                "rewards/accuracies": 0.5, "grad_norm": 3.0, "learning_rate": 1e-3, "epoch": 0.5},
               {"step": 2, "loss": 0.1, "reward": 0.4, "rewards/metric/mean": 0.3, "rewards/metric/std": 0.2, "epoch": 1.0},
               {"step": 2, "train_runtime": 9.0}]
    assert curve(history) == [
        {"step": 1, "loss": 0.7, "rewards/margins": 0.1, "logps/chosen": -2.9, "logps/rejected": -3.0, "rewards/accuracies": 0.5,
         "epoch": 0.5},
        {"step": 2, "loss": 0.1, "reward": 0.4, "rewards/metric/mean": 0.3, "epoch": 1.0}]
