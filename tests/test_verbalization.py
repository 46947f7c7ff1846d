"""Learned verbalization (issue 15): length plateau, action executor, oracle reward, verbalization cache,
bad input, and both GRPO stages wired end to end on the tiny random model."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from recbench.errors import UnknownNameError
from recbench.llm.backend import Generation
from recbench.llm.cache import CachedBackend
from recbench.llm.oracle import ORACLE_TIMES, OracleError, OracleReward, compression_reward, signed_reward
from recbench.llm.verbalization import SLOT, Interaction, ModelVerbalizer, execute_actions, truncate_to_budget
from recbench.llm.verbalizers import History, get_verbalizer
from recbench.testing import tiny_task


class FakeBackend:
    """Answers option 1 when the verbalization says 'Alpha', else option 2; records every request."""

    def __init__(self, fingerprint="fake", reply="a verbalization"):
        self.fingerprint, self.reply, self.calls = fingerprint, reply, []

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        if params.forced_prefix == "<answer>":
            return [[Generation("1" if "Alpha" in p[-1]["content"] else "2", 1)] for p in prompts]
        return [[Generation(self.reply, 3)] for _ in prompts]

    def score(self, prompts, continuations, *, forced_prefix="", normalize="mean"):
        self.calls.append(len(prompts))
        return [np.log([1.0, 3.0]) for _ in prompts]


def oracle_row(**extra):
    row = {"reader": "choice", "output": "number", "options": ["Movie A", "Movie B"], "gold": [0], "forced_prefix": "",
           "reasoner": [{"role": "user", "content": f"History:\n{SLOT}\nPick."}], "reasoner_prefix": "<answer>",
           "stop": ["</answer>"], "continuations": ["1</answer>", "2</answer>"], "budget": 100, "source_chars": 100,
           "verbalizer": "rewrite"}
    return {**row, **extra}


ROWS = [Interaction("7", "19971120, Thursday, 3 PM, ID: 7, Kolya (1996), Rated, Rating: 3/5", "genres: Comedy"),
        Interaction("9", "19971121, Friday, 4 PM, ID: 9, Heat (1995), Rated, Rating: 5/5", "genres: Action"),
        Interaction("7", "19971122, Saturday, 5 PM, ID: 7, Kolya (1996), Rated, Rating: 4/5", "genres: Comedy")]


def test_length_plateau_on_the_compression_ratio():
    reward = compression_reward(0.3, 0.7)
    replies = ["x" * n for n in (0, 15, 30, 50, 70, 85, 100, 130)]
    # below 0.3 rises linearly from 0; 1 on [0.3, 0.7]; falls to 0 at ratio 1
    assert reward(replies, [oracle_row()] * 8) == pytest.approx([0, 0.5, 1, 1, 1, 0.5, 0, 0])
    # an action reply is measured after execution: dropping both Kolya rows keeps the header and Heat only
    row = oracle_row(verbalizer="action", interactions=[[i.id, i.row, i.metadata] for i in ROWS])
    kept, _ = execute_actions("ID: 7, 0, 0\nID: 9, 1, 0\nID: 7, 0, 0", ROWS)
    row["source_chars"] = len(kept) * 2  # the executed text is half its source: ratio 0.5, on the plateau
    assert reward(["ID: 7, 0, 0\nID: 9, 1, 0\nID: 7, 0, 0"], [row]) == [1.0]
    assert signed_reward()(["<answer>1</answer>", "<answer>2</answer>", "nothing"], [oracle_row()] * 3) == [1, -1, -1]


def test_action_executor_keeps_enriches_drops_and_counts_fallbacks():
    reply = "19971120 3 PM, ID: 7, 1, 1\n19971121 4 PM, ID: 9, 0, 1\nID: 7, maybe, yes"  # the last line is malformed
    text, fallbacks = execute_actions(reply, ROWS, header="H")
    assert text.splitlines() == ["H", ROWS[0].row + ", genres: Comedy", ROWS[2].row]  # Heat dropped; row 3 kept as is
    assert fallbacks == 1
    assert execute_actions("", ROWS, header="H") == ("\n".join(["H", *(r.row for r in ROWS)]), 3)  # nothing readable: keep all
    text, fallbacks = execute_actions("ID: 7, 0, 0\nID: 7, 1, 1\nID: 9, 1, 0", ROWS, header="H")  # repeats in order
    assert (text.splitlines(), fallbacks) == (["H", ROWS[1].row, ROWS[2].row + ", genres: Comedy"], 0)


def test_oracle_reward_is_batched_cached_dense_and_truncates():
    fake = FakeBackend()
    oracle = OracleReward(scoring="choice", backend=fake)
    before = dict(ORACLE_TIMES)
    assert oracle(["Alpha fan", "Beta fan", "Alpha fan"], [oracle_row()] * 3) == [1.0, 0.0, 1.0]
    assert fake.calls == [2]  # one batch; the repeated verbalization asked once
    assert oracle(["Beta fan", "Alpha fan"], [oracle_row()] * 2) == [0.0, 1.0] and fake.calls == [2]  # never scored twice
    assert (ORACLE_TIMES["scored"] - before["scored"], ORACLE_TIMES["reused"] - before["reused"]) == (2, 3)
    dense = OracleReward(scoring="prob", backend=FakeBackend())
    assert dense(["anything"], [oracle_row()]) == [pytest.approx(0.25)]  # softmax(log 1, log 3) of the gold option
    cut = OracleReward(backend=FakeBackend())
    assert cut(["Beta Beta Beta Alpha"], [oracle_row(budget=3)]) == [0.0]  # "Alpha" lies past the 3-token budget
    assert ORACLE_TIMES["truncated"] - before["truncated"] == 1
    assert truncate_to_budget("one two  three four", 2, lambda t: len(t.split())) == ("one two", True)


def test_an_oracle_endpoint_that_is_down_fails_after_its_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    oracle = OracleReward(model=f"http://127.0.0.1:{port}/v1#oracle", retries=1, timeout=2)
    oracle.backend.inner.backoff_s = 0.0
    with pytest.raises(OracleError, match=r"oracle reasoner .* failed after 2 attempt\(s\).*connection failed"):
        oracle(["Alpha"], [oracle_row()])


@pytest.fixture(scope="module")
def rerank():
    return tiny_task("rerank")


def test_unknown_verbalizer_gets_a_did_you_mean(rerank):
    with pytest.raises(UnknownNameError, match="Did you mean 'rewrite'"):
        get_verbalizer("rewrit", rerank[1].fit.catalog)
    assert get_verbalizer("action", rerank[1].fit.catalog) is get_verbalizer("action", rerank[1].fit.catalog)


def test_verbalizations_are_cached_by_checkpoint_and_example_and_cut_to_the_budget(rerank, tmp_path):
    _, data = rerank
    examples = data.test_inputs
    histories = [History.of(examples, r) for r in (0, 1, 0)]
    words = lambda text: len(text.split())  # noqa: E731
    first = FakeBackend("checkpoint:A", reply="word " * 100)
    verbalizer = ModelVerbalizer(data.fit.catalog, "rewrite")
    verbalizer.bind(CachedBackend(first, tmp_path / "cache.sqlite"))
    made = verbalizer.prepare(histories, 80, words)
    assert first.calls == [2] and made[0] == made[2]  # two examples, one batch
    assert all(v.truncated and words(v.text) == 80 for v in made) and verbalizer.stats["truncated"] == 2
    again = ModelVerbalizer(data.fit.catalog, "rewrite")  # a new run: no memory, the same checkpoint
    again.bind(CachedBackend(FakeBackend("checkpoint:A", reply="other"), tmp_path / "cache.sqlite"))
    assert [v.text for v in again.prepare(histories, 80, words)] == [v.text for v in made]
    assert again.backend.inner.calls == [] and again.backend.hits == 2
    other = FakeBackend("checkpoint:B", reply="short")
    again.bind(CachedBackend(other, tmp_path / "cache.sqlite"))
    assert [v.text for v in again.prepare(histories, 80, words)] == ["short"] * 3 and other.calls == [2]


TINY = dict(model="tiny-random-llama", verbalizer_model="tiny-random-llama", oracle="tiny-random-llama",
            train_examples=4, valid_examples=2, lr_grid=(1e-3,), max_history_tokens=48, verbal_tokens=8,
            num_generations=2, prompts_per_step=2, max_new_tokens=4, oracle_scoring="prob", cache=False,
            epochs=1.0)


@pytest.mark.usefixtures("one_torch_thread")
def test_both_stages_train_with_their_rewards_and_answer(rerank):
    from recbench.plugins.llm.verbalization import VerbalRewriteReasoner

    task, data = rerank
    method = VerbalRewriteReasoner(VerbalRewriteReasoner.Config(**TINY))
    method.fit(data.fit)
    fitted = method.describe()
    stage1, stage2 = fitted["trained"]["verbalizer"]["curve"], fitted["trained"]["reasoner"]["curve"]
    assert len(stage1) == 2 and all("rewards/oracle/mean" in p and "rewards/compression/mean" in p for p in stage1)
    assert all("rewards/signed/mean" in p for p in stage2)
    assert fitted["verbalizer_backend"].startswith("rewrite:checkpoint:")
    batch = data.test_inputs.take(np.arange(3))
    predictions = method.predict(batch, task.contract())
    task.contract().validate(predictions, batch, data.fit.catalog, method.name)
    assert all(isinstance(e["verbalization"], str) for e in predictions.extras)
    assert 0 <= predictions.diagnostics["verbal_compression_ratio"] and "verbal_truncated_rate" in predictions.diagnostics
    rows = method.verbalizer_rows(batch, data.test_targets.take(np.arange(3)))
    answer = json.loads(rows[0]["answer_row"])
    assert SLOT in answer["reasoner"][-1]["content"] and answer["forced_prefix"] == "" and answer["source_chars"] > 0


def test_presets_state_the_papers_settings():
    from recbench.plugins.llm.verbalization import VerbalRewrite

    paper = VerbalRewrite(VerbalRewrite.Config(preset="paper")).config
    assert (paper.verbalizer_model, paper.oracle_scoring, paper.alpha, paper.length_low, paper.length_high) == (
        "Qwen/Qwen3-8B", "choice", 0.9, 0.3, 0.7)
    assert paper.use_vllm and paper.loss_type == "grpo" and paper.beta > 0 and paper.oracle.startswith("http://")
    smoke = VerbalRewrite(VerbalRewrite.Config()).config
    assert (smoke.verbalizer_model, smoke.num_generations, smoke.verbal_tokens, smoke.oracle_scoring) == (
        "smollm2-135m", 4, 64, "prob")
    assert 16 <= smoke.train_examples <= 64 and not smoke.use_vllm
    with pytest.raises(ValueError, match="alpha"):
        VerbalRewrite.Config(alpha=1.5)
