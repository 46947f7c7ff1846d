"""Post-training recipes on the tiny artwork task: each trains, changes predictions, caches its checkpoint.

The model is ``tiny-random-llama`` (2 layers, byte tokenizer) and every run trains 2 steps on 4
pairs with 4 options each, so the suite checks the mechanics, not the quality.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recbench.errors import ConfigError
from recbench.llm.backend import Generation
from recbench.llm.method import task_interface
from recbench.llm.models import resolve_model
from recbench.llm.training import LOG_FILE, TrainJob, launch, trained_checkpoint
from recbench.plugins.llm.dpo import DPO, SFTDPO
from recbench.plugins.llm.sft import SFT, SFTNumber, SFTReason
from recbench.plugins.llm.zero_shot import ZeroShot
from recbench.testing import tiny_task

TINY = dict(model="tiny-random-llama", train_examples=4, valid_examples=2, lr_grid=(1e-2,), max_history_tokens=32,
            train_batch_size=2, max_length=4096, max_new_tokens=8, mode="score", cache=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def artwork():
    """The tiny artwork task cut to titles with 4 options, so prompts fit the tiny model's context."""
    task, data = tiny_task("artwork")

    def few(examples, targets, n):
        rows = np.flatnonzero((examples.candidates >= 0).sum(axis=1) == 4)[:n]
        return examples.take(rows), targets.take(rows)

    train, train_t = few(data.fit.train_examples, data.fit.train_targets, 20)
    valid, valid_t = few(data.fit.valid, data.fit.valid_targets, 4)
    test, test_t = few(data.test_inputs, data.test_targets, 3)
    fit = replace(data.fit, train_examples=train, train_targets=train_t, valid=valid, valid_targets=valid_t)
    return task, replace(data, fit=fit, test_inputs=test, test_targets=test_t)


def _option_logliks(method, artwork):
    task, data = artwork
    predictions = method.predict(data.test_inputs, task.contract())
    return np.array([e["option_loglik"] for e in predictions.extras])


@pytest.fixture(scope="module")
def base_logliks(artwork):
    zero = ZeroShot(ZeroShot.Config(model="tiny-random-llama", mode="score", max_history_tokens=32, cache=False))
    zero.fit(artwork[1].fit)
    return _option_logliks(zero, artwork)


@pytest.mark.parametrize("recipe", [SFT, SFTNumber, DPO, SFTDPO])
def test_each_recipe_trains_and_changes_the_models_scores(recipe, artwork, base_logliks):
    method = recipe(recipe.Config(**TINY))
    method.fit(artwork[1].fit)
    chosen = method.describe()
    assert chosen["lr"] == 1e-2 and chosen["train_rows"] == 4 and "valid_ips" in chosen
    trained = _option_logliks(method, artwork)
    if recipe is SFTNumber:  # number answers score "N</answer>", not captions: compare with the base's numbers
        base = ZeroShot(ZeroShot.Config(model="tiny-random-llama", mode="score", output="number", max_history_tokens=32, cache=False))
        base.fit(artwork[1].fit)
        assert not np.allclose(trained, _option_logliks(base, artwork), atol=1e-3)
    else:
        assert not np.allclose(trained, base_logliks, atol=1e-3)
    if recipe is SFTDPO:
        assert Path(chosen["start_checkpoint"]).name.startswith("sft-")


def test_dpo_with_an_sft_term_trains_through_trl_and_only_then_names_it(artwork, base_logliks):
    from recbench.llm.trainers.dpo import DPOArgs

    assert DPOArgs().losses() == {"loss_type": ["sigmoid"]}
    assert DPOArgs(sft_weight=0.5).losses() == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    with pytest.raises(ValueError, match="sft_weight"):
        DPO.Config(sft_weight=-1.0)
    assert "sft_weight" not in DPO(DPO.Config(**TINY)).trainer_options()  # old checkpoints keep their keys
    method = DPO(DPO.Config(**TINY, sft_weight=1.0))
    assert method.trainer_options() == {"beta": 0.1, "sft_weight": 1.0}
    method.fit(artwork[1].fit)
    assert not np.allclose(_option_logliks(method, artwork), base_logliks, atol=1e-3)


class FakeTeacher:
    """Justifies every answer; then predicts the given answers, in the order it is asked."""

    fingerprint = "fake-teacher"

    def __init__(self, answers: list[str]) -> None:
        self.answers, self.calls = answers, 0

    def generate(self, prompts, params):
        if params.forced_prefix == "Reason:":  # the justification step
            return [[Generation(" The user likes dark scenes.", 6)] for _ in prompts]
        said = self.answers[self.calls]
        self.calls += 1
        return [[Generation(f" {said} </option>", 10)]]


def test_reasoning_filter_drops_a_teacher_that_disagrees(artwork, monkeypatch):
    _, data = artwork
    method = SFTReason(SFTReason.Config(**{**TINY, "mode": "generate"}))
    train = data.fit.train_examples.take(np.arange(4))  # exactly train_examples pairs: all are used, in order
    fit = replace(data.fit, train_examples=train, train_targets=data.fit.train_targets.take(np.arange(4)))
    captions = data.fit.catalog.tables["artworks"]["caption"].to_numpy(dtype=object)
    truth = [int(data.fit.train_targets.items_of(r)[0]) for r in range(4)]
    # examples 0 and 3 hold the same prompt (the tiny history budget shows no history), so the teacher is asked
    # once for both: it disagrees on example 1, asked second
    wrong = next(int(c) for c in train.candidates[1] if c >= 0 and c != truth[1])
    teacher = FakeTeacher([captions[truth[0]], captions[wrong], captions[truth[2]]])
    monkeypatch.setattr(SFTReason, "_teacher", lambda self: teacher)
    method.fit(fit)
    chosen = method.describe()
    assert (chosen["teacher_examples"], chosen["teacher_kept"], chosen["filter_rate"]) == (4, 3, 0.25)
    assert chosen["train_rows"] == 3
    teacher.calls = 0
    rows = method.training_rows(train, fit.train_targets)
    assert len(rows) == 3
    assert rows[0]["prompt"].endswith("Reason:")  # rendered as inference sees it, forced prefix included
    assert rows[0]["completion"].startswith(" The user likes dark scenes.\nPrediction: <option> ")


def test_training_rows_continue_the_forced_prefix_that_inference_supplies(artwork):
    """The loss falls on what the model writes after the forced prefix: for numbers, the digit and the tag."""
    _, data = artwork
    train, targets = data.fit.train_examples.take(np.arange(2)), data.fit.train_targets.take(np.arange(2))
    method = SFTNumber(SFTNumber.Config(**TINY))
    method.task = task_interface(data.fit, method.name)
    method._tokenizer(resolve_model(method.config.model).path)
    rows = method.training_rows(train, targets)
    assert all(r["prompt"].endswith("<answer>") for r in rows)
    expected = [f"{int(np.flatnonzero(train.candidates[i] == targets.items_of(i)[0])[0]) + 1}</answer>" for i in range(2)]
    assert [r["completion"] for r in rows] == expected


def test_reasoning_needs_generation_and_the_reason_output():
    with pytest.raises(ValueError, match="output must be 'reason'"):
        SFTReason.Config(output="text")
    with pytest.raises(ValueError, match="lr_grid must list positive"):
        SFT.Config(lr_grid=())


def _job(tmp_path, artwork, lr=1e-2):
    from recbench.llm.models import resolve_model

    method = SFT(SFT.Config(**TINY))  # the rows come from the recipe itself
    _, data = artwork
    method.task = data.fit.llm
    base = resolve_model("tiny-random-llama").path
    method._tokenizer(base)
    rows = method.training_rows(data.fit.train_examples.take(np.arange(4)), data.fit.train_targets.take(np.arange(4)))
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return TrainJob("sft", str(base), str(path), lr=lr, batch_size=2, max_length=4096, new_tokens=("<option>", "</option>"))


def test_a_cached_checkpoint_is_reused_and_a_corrupt_one_rebuilt(tmp_path, artwork):
    job = _job(tmp_path, artwork)
    first = trained_checkpoint(job)
    again = trained_checkpoint(job)
    assert not first.reused and again.reused and again.path == first.path
    adapter = first.path / "adapter_model.safetensors"
    blob = bytearray(adapter.read_bytes())
    blob[-5] ^= 0xFF  # same size, different content: only the sha256 check can see it
    adapter.write_bytes(bytes(blob))
    rebuilt = trained_checkpoint(job)
    assert not rebuilt.reused and adapter.read_bytes() != bytes(blob)
    other = trained_checkpoint(replace(job, lr=2e-2))
    assert other.path != first.path


def test_training_runs_under_accelerate_with_two_cpu_processes(tmp_path, artwork):
    job = _job(tmp_path, artwork)
    out = tmp_path / "distributed"
    launch(job, out, processes=2)
    log = json.loads((out / LOG_FILE).read_text())
    assert (log["world_size"], log["rows"], log["steps"]) == (2, 4, 1), log  # 4 rows over 2 processes x batch 2
    assert (out / "adapter_model.safetensors").is_file()


def test_methods_refuse_a_task_without_labelled_choices(artwork):
    _, data = artwork
    with pytest.raises(ConfigError, match="trains on labelled examples"):
        SFT(SFT.Config(**TINY)).fit(replace(data.fit, train_examples=None))


def test_dpo_smoke_preset_is_its_own_and_sft_dpo_starts_from_the_sft_recipes_preset():
    dpo = DPO(DPO.Config())
    assert (dpo.config.train_examples, dpo.config.lr_grid, dpo.config.gradient_checkpointing) == (12, (1e-3,), True)
    start = SFTDPO(SFTDPO.Config()).start_recipe()
    assert type(start) is SFT and start.config == SFT(SFT.Config()).config  # the checkpoint `sft` itself chooses
    assert SFTDPO(SFTDPO.Config(train_examples=48)).start_recipe().config.train_examples == 48  # what is set is shared
    assert DPO(DPO.Config(preset="paper")).config.lr_grid == SFT(SFT.Config(preset="paper")).config.lr_grid
