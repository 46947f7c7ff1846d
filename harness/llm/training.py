"""LoRA post-training on TRL, cached as checkpoints: the engine under ``sft``, ``dpo`` and their variants.

A :class:`TrainJob` says everything a training run depends on: the algorithm (a trainer of the
registry :mod:`recbench.llm.trainers`, with its own options in ``options``), the parent model,
the rows (whatever columns that trainer needs), the LoRA shape and the optimizer settings.
:func:`trained_checkpoint` turns a job into a checkpoint folder under
``$RECBENCH_HOME/checkpoints``, named by the hash of the parent's content, the rows and the
settings, so an evaluation rerun, another learning rate's comparison or a DPO run starting from
the SFT checkpoint reuses it. The folder holds the LoRA adapter, the embedding rows of the added
tokens and the tokenizer (a few MB, not a merged copy of the model); every file's sha256 is
recorded when it is written and checked before it is loaded, so a corrupt checkpoint is rebuilt.

Tokens listed in ``new_tokens`` (``<option>``, ``</option>``) are added to the tokenizer as
atomic tokens. With ``train_new_tokens`` their embedding rows (and output rows, when the model
does not tie them) are trained beside the adapter while every other row stays frozen: TRL computes
the loss from ``lm_head.weight`` directly, so PEFT's token adapters would not be trained there.

The same job runs in this process (``processes=1``) or under ``accelerate launch`` with one
process per device: ``python -m recbench.llm.training JOB.json`` is the entry point both use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recbench.data.store import recbench_home
from recbench.errors import RecbenchError
from recbench.hashing import stable_hash
from recbench.llm.trainers import BuildContext, get_trainer

ROWS_FILE = "new_token_rows.safetensors"
PARENT_FILE = "parent.json"
LOG_FILE = "train_log.json"


@dataclass(frozen=True)
class TrainJob:
    algorithm: str  # a trainer of recbench.llm.trainers
    parent: str  # a model folder, or a checkpoint folder of this module
    rows: str  # JSONL file of training rows
    lr: float
    epochs: float = 1.0
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 2048
    seed: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("all-linear",)
    options: dict[str, Any] = field(default_factory=dict)  # the algorithm's own options (its trainer's Config)
    new_tokens: tuple[str, ...] = ()
    train_new_tokens: bool = True
    dtype: str = "auto"  # training dtype: bf16 on GPUs that support it, fp32 otherwise
    gradient_checkpointing: bool = True  # recompute activations: less memory, about a third more compute
    quiet: bool = True

    def recipe(self, parent_digest: str, rows_digest: str) -> dict[str, Any]:
        """What the checkpoint's content depends on: the parent's and rows' content, never their paths."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("parent", "rows", "quiet")}
        return {"parent": parent_digest, "rows": rows_digest, "settings": settings, "engine": 2}


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    recipe_hash: str
    provenance: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


def checkpoints_dir() -> Path:
    return recbench_home() / "checkpoints"


def file_digest(path: Path) -> str:
    from recbench.llm.models import file_sha256

    return file_sha256(path)


def model_digest(folder: Path) -> str:
    """Content digest of a parent: a checkpoint's recorded recipe hash, or a model folder's files."""
    from recbench.llm.models import MARKER, folder_digest

    marker = folder / MARKER
    if (folder / PARENT_FILE).is_file() and marker.is_file():
        return "checkpoint:" + json.loads(marker.read_text())["provenance"]["recipe_hash"]
    return "model:" + folder_digest(folder)


def trained_checkpoint(job: TrainJob, *, processes: int = 1) -> Checkpoint:
    """The checkpoint of ``job``: reused when its verified folder exists, trained otherwise."""
    from recbench.llm.models import ensure_built

    recipe = job.recipe(model_digest(Path(job.parent)), file_digest(Path(job.rows)))
    recipe_hash = stable_hash(recipe, 20)
    folder = checkpoints_dir() / f"{job.algorithm}-{recipe_hash}"
    built: list[bool] = []

    def build(staging: Path) -> dict[str, Any]:
        built.append(True)
        launch(job, staging, processes=processes)
        log = json.loads((staging / LOG_FILE).read_text())
        return {"recipe_hash": recipe_hash, "algorithm": job.algorithm, "train_loss": log.get("train_loss"),
                "curve": log.get("curve"),
                "steps": log.get("steps"), "train_seconds": log.get("train_seconds"), "processes": processes,
                "rows_used": log.get("rows_used")}

    path, provenance = ensure_built(folder, recipe, build, verify=True)
    return Checkpoint(path, recipe_hash, provenance, reused=not built)


def launch(job: TrainJob, output: Path, *, processes: int = 1) -> None:
    """Run ``job`` here, or under ``accelerate launch`` with ``processes`` processes (CPU or one per GPU)."""
    if processes <= 1:
        run_job(job, output)
        return
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "job.json"
        spec.write_text(json.dumps({"job": asdict(job), "output": str(output)}))
        # --multi_gpu selects accelerate's torchrun launcher; without CUDA the processes join over gloo on the CPU
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "-m", "recbench.llm.training", str(spec)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if done.returncode != 0 or not (output / LOG_FILE).is_file():
            raise RecbenchError(
                f"distributed training ({processes} processes) failed with exit code {done.returncode}:\n"
                f"{done.stderr[-3000:]}\nRun it with processes=1 to see the error in this process."
            )


def _dtype(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def add_tokens(tokenizer: Any, model: Any, tokens: tuple[str, ...]) -> list[int]:
    """Add ``tokens`` as atomic, non-normalized tokens (kept in decoded text) and grow the embeddings."""
    from tokenizers import AddedToken

    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in missing])
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return tokenizer.convert_tokens_to_ids(list(tokens))


def token_row_weights(model: Any) -> dict[str, Any]:
    """The embedding matrices that hold per-token rows: the input embeddings, and the output ones if untied."""
    weights = {"embed": model.get_input_embeddings().weight}
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != weights["embed"].data_ptr():
        weights["lm_head"] = out.weight
    return weights


def load_model(folder: Path, dtype: Any, task_type: str | None = None) -> tuple[Any, Any]:
    """Model and tokenizer of a model folder, or of a checkpoint (its parent chain applied, merged).

    ``task_type`` ``"SEQ_CLS"`` loads a model folder as a one-output sequence classifier (a reward
    model's base); a checkpoint says itself which kind it is (``task_type`` in its parent file).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    parent_file = folder / PARENT_FILE
    if not parent_file.is_file():
        if task_type == "SEQ_CLS":
            tokenizer = AutoTokenizer.from_pretrained(folder)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=dtype, num_labels=1)
            model.config.pad_token_id = tokenizer.pad_token_id
            return model, tokenizer
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype), AutoTokenizer.from_pretrained(folder)
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    parent = json.loads(parent_file.read_text())
    kind = parent.get("task_type", "CAUSAL_LM")
    if task_type not in (None, kind):
        raise RecbenchError(f"checkpoint {folder.name} holds a {kind} model; a {task_type} model cannot start from it "
                            "(a reward model starts from a model folder, e.g. the base model).")
    if kind == "SEQ_CLS" and (Path(parent["path"]) / PARENT_FILE).is_file():
        raise RecbenchError(f"checkpoint {folder.name}: a reward model's parent must be a model folder, not a checkpoint.")
    model, _ = load_model(Path(parent["path"]), dtype, kind)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = add_tokens(tokenizer, model, tuple(parent["new_tokens"]))
    rows = load_file(folder / ROWS_FILE)
    with torch.no_grad():
        for name, weight in token_row_weights(model).items():
            weight[ids] = rows[name].to(weight.dtype)
    model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    if kind == "SEQ_CLS":
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def run_job(job: TrainJob, output: Path) -> None:
    """Train ``job`` with TRL and save the adapter, the new tokens' rows and the tokenizer into ``output``."""
    import time

    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file

    torch.manual_seed(job.seed)
    dtype = _dtype(job.dtype)
    trainer_spec = get_trainer(job.algorithm)
    task_type = getattr(trainer_spec, "task_type", "CAUSAL_LM")  # SEQ_CLS: a reward model's scalar head
    model, tokenizer = load_model(Path(job.parent), dtype, task_type)
    ids = add_tokens(tokenizer, model, job.new_tokens)
    targets = job.target_modules[0] if job.target_modules == ("all-linear",) else list(job.target_modules)
    lora = LoraConfig(r=job.lora_rank, lora_alpha=job.lora_alpha, lora_dropout=job.lora_dropout,
                      target_modules=targets, task_type=task_type)
    model = get_peft_model(model, lora)
    if job.train_new_tokens and trainer_spec.trains_new_tokens and ids:
        mask = torch.zeros(len(tokenizer), 1)
        mask[ids] = 1.0
        for weight in token_row_weights(model).values():
            weight.requires_grad_(True)
            weight.register_hook(lambda grad: grad * mask.to(grad.device, grad.dtype))
    rows = [json.loads(line) for line in Path(job.rows).read_text().splitlines() if line.strip()]
    trainer_spec.check_rows(rows)
    dataset = Dataset.from_list(rows)
    with tempfile.TemporaryDirectory() as scratch:
        common = dict(
            output_dir=scratch, learning_rate=job.lr, num_train_epochs=job.epochs,
            per_device_train_batch_size=job.batch_size, gradient_accumulation_steps=job.grad_accum,
            max_length=job.max_length, seed=job.seed, data_seed=job.seed, report_to=[], save_strategy="no",
            logging_steps=1, use_cpu=not torch.cuda.is_available(), bf16=dtype == torch.bfloat16,
            disable_tqdm=job.quiet, weight_decay=0.0, gradient_checkpointing=job.gradient_checkpointing,
        )
        context = BuildContext(model, tokenizer, dataset, common, trainer_spec.config(job.options))
        trainer = trainer_spec.build(context)
        if hasattr(trainer, "add_callback"):  # transformers Trainers
            trainer.add_callback(stage_steps())
        elif hasattr(trainer, "step_callbacks"):  # recbench's own loops (ppo, rlso)
            trainer.step_callbacks.append(own_loop_steps)
        used = len(trainer.train_dataset)  # TRL drops rows whose answer max_length cut off entirely
        if used == 0:
            raise RecbenchError(
                f"every one of the {len(rows)} training rows is longer than max_length={job.max_length} tokens before "
                "its answer starts, so nothing is left to learn from; raise max_length or shorten the prompts "
                "(max_history_tokens)."
            )
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        trainer.accelerator.wait_for_everyone()
        if not trainer.accelerator.is_main_process:
            return
        output.mkdir(parents=True, exist_ok=True)
        # the trained adapter only (DPO adds a reference copy), without the embeddings: the new rows are saved on their own
        model.save_pretrained(output, selected_adapters=["default"], save_embedding_layers=False)
        tokenizer.save_pretrained(output)
        save_file({name: w.detach()[ids].float().contiguous() for name, w in token_row_weights(model).items()},
                  output / ROWS_FILE)
        parent = {"path": str(Path(job.parent).resolve()), "new_tokens": list(job.new_tokens)}
        if task_type != "CAUSAL_LM":
            parent["task_type"] = task_type
        (output / PARENT_FILE).write_text(json.dumps(parent))
        log = {"train_loss": round(float(result.training_loss), 6), "steps": int(result.global_step),
               "train_seconds": round(seconds, 1), "rows": len(rows), "rows_used": used,
               "world_size": trainer.accelerator.num_processes,
               "history": [h for h in trainer.state.log_history if "loss" in h or "reward" in h],
               "curve": curve(trainer.state.log_history)}
        (output / LOG_FILE).write_text(json.dumps(log, indent=1))


def stage_steps() -> Any:
    """A TrainerCallback that reports each optimizer step to the open stage (:mod:`recbench.progress`)."""
    from transformers import TrainerCallback

    from recbench import progress

    class StageSteps(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress.set_total(state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            progress.advance()

    return StageSteps()


def own_loop_steps(step: int, steps: int) -> None:
    """What :func:`stage_steps` does, for recbench's own training loops: called after step ``step`` of ``steps``."""
    from recbench import progress

    if step == 1:
        progress.set_total(steps)
    progress.advance()


CURVE_KEYS = ("loss", "reward", "reward_std", "frac_reward_zero_std", "entropy", "kl", "accuracy", "margin",
              # the fraction of the training set seen: several epochs over the same prompts compare like with like
              "epoch",
              # DPO: how far the chosen reply leads, and both replies' log-probabilities (a fall of both is the
              # likelihood displacement that sft_weight guards against)
              "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


def curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per logged step: the loss and the epoch; for RL trainers the mean reward, each reward's mean and the entropy;
    for DPO the reward margin, the pair accuracy and both replies' log-probabilities."""
    out = []
    for entry in log_history:
        if "step" not in entry or ("loss" not in entry and "reward" not in entry):
            continue
        point = {"step": int(entry["step"])}
        for key, value in entry.items():
            if key in CURVE_KEYS or (key.startswith("rewards/") and key.endswith("/mean")):
                point[key] = round(float(value), 5)
        out.append(point)
    return out


def main(argv: list[str]) -> int:
    """``python -m recbench.llm.training JOB.json``: the entry point ``accelerate launch`` runs."""
    spec = json.loads(Path(argv[0]).read_text())
    job = spec["job"]
    job["target_modules"] = tuple(job["target_modules"])
    job["new_tokens"] = tuple(job["new_tokens"])
    if job.get("options", {}).get("rewards") is not None:
        job["options"]["rewards"] = tuple(job["options"]["rewards"])
    run_job(TrainJob(**job), Path(spec["output"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
