"""LangPTune and its ablations: an LLM writes a language profile from the history; a sentence
embedder ranks the catalog against the profile (the LangPTune paper, Algorithm 1).

- ``langptune0``: no training (the paper's LangPTune-0).
- ``langptune_cl``: the embedder trained with InfoNCE on (profile, next item text), profiles
  written by the frozen LLM (LangPTune-CL).
- ``langptune_rlso``: the LLM (LoRA) trained with RLSO (:mod:`recbench.llm.trainers.rlso`): two
  sampled profiles per history, reward the NDCG of the upcoming item in the list retrieved with the
  profile (the current embedder, history items masked), the frozen embedder (LangPTune-RLSO).
- ``langptune``: ``iterations`` (K) rounds of ``steps`` (J) InfoNCE batches, on profiles freshly
  written by the current LLM, then ``rlso_batches`` (T) RLSO batches against the updated embedder.

``langptune_rlso`` with ``processes=N`` (N > 1) trains its K x T RLSO batches as one ``rlso``
training job under ``accelerate launch`` (:mod:`recbench.llm.training`, one process per GPU, or
CPU processes), each process taking ``rlso_batch_size`` histories per batch; the reward
(``profile_retrieval``) is rebuilt by name in every process from the frozen embedder and the item
matrix saved once; the checkpoint is cached like any recipe's. ``langptune`` stays in this process:
its RLSO rounds score against an embedder that InfoNCE changes between them and continue one LoRA
adapter, one optimizer state and one reference policy (the adapter switched off) across the K
rounds. A job per round would start a fresh adapter and optimizer on the merged previous round, and
with ``gamma`` > 0 (the paper's 0.2) its KL reference would be that round's start instead of the
initial policy: another algorithm, not the same one on more devices.

Training pairs are the task's labelled training examples (else windows of the training
interactions, as ``emb_cl``). Profiles are greedy at evaluation and stop at ``profile_tokens``:
a profile that reaches the limit is truncated there and counted (``profiles_truncated``). Every
test example keeps its profile (``extras``). ``smoke``: SmolLM2-135M + LoRA r=8, MiniLM, 64-token
profiles, a few dozen training sessions, for a CPU; ``paper``: Gemma-2B-it with LoRA r=1024 and
the appendix's rates, batches, K, J and T (for GPUs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recbench import hookimpl
from recbench.config import option
from recbench.examples import ExampleSet, FitData, Predictions
from recbench.method import ScoringMethod, top_k
from recbench.plugins.llm.emb import EmbConfig, training_pairs

INSTRUCTION = ("The user chose the following items, arranged chronologically from the oldest (top) to the newest "
               "(bottom). Please provide a high-level summary of the user preference in detail.")  # the paper's, without ratings

LANGPTUNE_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"embedder": "all-minilm-l6-v2", "model": "smollm2-135m", "profile_tokens": 64, "train_sessions": 48,
              "iterations": 1, "steps": 4, "batch_size": 16, "lr": 5e-5, "rlso_batches": 4, "rlso_batch_size": 4,
              "rlso_lr": 1e-4, "rlso_epochs": 2, "gamma": 0.0, "lora_rank": 8, "lora_alpha": 16},
    "paper": {"embedder": "mixedbread-ai/mxbai-embed-large-v1", "model": "google/gemma-2b-it", "profile_tokens": 512,
              "train_sessions": 0, "iterations": 5, "steps": 800, "batch_size": 256, "lr": 1e-7, "rlso_batches": 200,
              "rlso_batch_size": 64, "rlso_lr": 1e-7, "rlso_epochs": 4, "gamma": 0.2, "lora_rank": 1024, "lora_alpha": 2048},
}  # paper: appendix C, LangPTune (Gemma-2B-it); langptune_cl uses CL lr 1e-5 there (set --set lr=1e-5)


@dataclass(frozen=True)
class LangPTuneConfig(EmbConfig):
    presets: ClassVar[dict[str, dict[str, Any]]] = LANGPTUNE_PRESETS
    model: str | None = option(None, "profile writer: an alias, folder or hub id (smoke smollm2-135m, paper gemma-2b-it)")
    profile_tokens: int | None = option(None, "profile length limit in tokens; longer profiles are truncated and counted (paper 512)")
    iterations: int | None = option(None, "K: alternating rounds of InfoNCE then RLSO")
    rlso_batches: int | None = option(None, "T: RLSO batches per round")
    rlso_batch_size: int | None = option(None, "histories per RLSO batch (two profiles each)")
    rlso_lr: float | None = option(None, "RLSO learning rate of the LoRA weights")
    rlso_epochs: int | None = option(None, "passes over each RLSO batch (paper 4)")
    eta: float = option(1.0, "RLSO eta")
    gamma: float | None = option(None, "KL penalty to the initial policy in the reward (paper Gemma 0.2)")
    reward_k: int = option(0, "reward NDCG cut-off (0: NDCG over the whole ranking, a dense reward)")
    lora_rank: int | None = option(None, "LoRA rank of the profile writer")
    lora_alpha: int | None = option(None, "LoRA alpha")
    gen_batch_size: int = option(8, "profiles generated per batch")


@dataclass(frozen=True)
class LangPTuneRLSOConfig(LangPTuneConfig):
    processes: int = option(1, "RLSO training processes; above 1 trains as one job under `accelerate launch` (one per GPU, "
                               "or CPU processes), each with rlso_batch_size histories per batch")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")


def profile_ndcg(queries: np.ndarray, items: np.ndarray, rows: list[dict], k: int) -> np.ndarray:
    """NDCG of each row's upcoming item in the list its profile vector retrieves, its history masked (the RLSO reward)."""
    from recbench.examples import Histories
    from recbench.llm.embed import ndcg_of_target, rank

    scores = rank(queries, items, exclude=Histories.from_lists([np.asarray(r["history"], dtype=np.int64) for r in rows]))
    return ndcg_of_target(scores, np.array([r["target"] for r in rows]), k or None)


def profile_retrieval_reward(embedder: str, items: str, k: int = 0, max_seq_length: int = 256, batch_size: int = 64) -> Any:
    """The RLSO reward rebuilt by name in a training job: the frozen ``embedder`` encodes each profile,
    ``items`` is the ``.npy`` item matrix it made; rows are ``{"target": item, "history": [items]}``."""
    from recbench.llm.embed import Embedder

    model = Embedder(embedder, max_seq_length=max_seq_length, batch_size=batch_size)
    matrix = np.load(items)

    def reward(replies: list[str], rows: list[dict]) -> np.ndarray:
        return profile_ndcg(model.encode(list(replies)), matrix, rows, k)

    return reward


def saved_matrix(matrix: np.ndarray) -> Path:
    """``matrix`` as an ``.npy`` file named by its content under ``$RECBENCH_HOME/embeddings`` (a stable
    training-job option, so the job's checkpoint is found again)."""
    import hashlib
    import io

    from recbench.data.store import recbench_home
    from recbench.results import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(matrix, dtype=np.float32))
    blob = buffer.getvalue()
    path = recbench_home() / "embeddings" / f"items-{hashlib.sha256(blob).hexdigest()[:20]}.npy"
    if not path.is_file():
        atomic_write_bytes(path, blob)
    return path


def profile_prompt(tokenizer: Any, texts: list[str], history: np.ndarray, ratings: np.ndarray | None) -> str:
    """The profile request: the instruction, then one line per history item (with its rating when given)."""
    lines = [f"{texts[int(i)]} Rating: {r:g} out of 5" if ratings is not None and r > 0 else texts[int(i)]
             for i, r in zip(history, ratings if ratings is not None else np.zeros(len(history)))]
    content = INSTRUCTION + "\n\n" + "\n".join(lines)
    messages = [{"role": "user", "content": content}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return content + "\n\nProfile:"


class LangPTune0(ScoringMethod):
    name = "langptune0"
    description = "LangPTune-0: an LLM writes a profile from the history, a frozen sentence embedder ranks items against it"
    Config = LangPTuneConfig
    train_embedder: ClassVar[bool] = False
    train_llm: ClassVar[bool] = False

    def fit(self, data: FitData) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from recbench.llm.embed import Embedder, item_texts
        from recbench.llm.models import resolve_model

        super().fit(data)
        c = self.resolved = self.config.resolved()
        if c.torch_threads:
            torch.set_num_threads(c.torch_threads)
        torch.manual_seed(self.seed)
        self.texts, self.text_counts = item_texts(data.catalog.items)
        self.embedder = Embedder(c.embedder, max_seq_length=c.max_seq_length, batch_size=c.encode_batch_size)
        folder = resolve_model(c.model).path
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.llm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.counts = {"profiles": 0, "profiles_truncated": 0, "train_profiles": 0, "train_profiles_truncated": 0}
        self.curves: list[dict[str, float]] = []
        self.cl_losses: list[float] = []
        self.rlso_truncated = 0
        self.rlso_job: dict[str, Any] | None = None
        if self.train_embedder or self.train_llm:
            self._train(data, c)
        self.items = self.embedder.item_matrix(self.texts)

    # --- profiles -------------------------------------------------------------------------------

    def prompts_for(self, histories: list[np.ndarray], ratings: list[np.ndarray | None]) -> list[str]:
        c = self.resolved
        return [profile_prompt(self.tokenizer, self.texts, h[-c.max_history:], None if r is None else r[-c.max_history:])
                for h, r in zip(histories, ratings)]

    def write_profiles(self, prompts: list[str], counter: str = "profiles") -> list[str]:
        """Greedy profiles, ``profile_tokens`` at most; those that reach the limit are counted as truncated."""
        import torch

        c, tok, out = self.resolved, self.tokenizer, []
        tok.padding_side = "left"
        for start in range(0, len(prompts), c.gen_batch_size):
            enc = tok(prompts[start: start + c.gen_batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = self.llm.generate(**enc, do_sample=False, max_new_tokens=c.profile_tokens,
                                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
            replies = gen[:, enc["input_ids"].shape[1]:]
            ended = (replies == tok.eos_token_id).any(dim=1)
            self.counts[f"{counter}_truncated"] += int((~ended).sum())
            self.counts[counter] += len(replies)
            out.extend(t.strip() for t in tok.batch_decode(replies, skip_special_tokens=True))
        return out

    # --- training (Algorithm 1) -----------------------------------------------------------------

    def _train(self, data: FitData, c: LangPTuneConfig) -> None:
        from recbench.llm.embed import train_infonce
        from recbench.llm.trainers.rlso import RLSOConfig, RLSOTrainer

        histories, targets = training_pairs(data, c.max_history)
        rng = np.random.default_rng(self.seed)
        rows = rng.permutation(len(targets))
        if c.train_sessions:
            rows = rows[: c.train_sessions]
        prompts = self.prompts_for([histories[r] for r in rows], [None] * len(rows))
        answer_rows = [{"target": int(targets[r]), "history": histories[r]} for r in rows]
        if getattr(c, "processes", 1) > 1:  # langptune_rlso only (its config alone has processes): see the module docstring
            self._rlso_job(prompts, answer_rows, c)
            return
        if self.train_llm:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                              task_type="CAUSAL_LM")
            self.llm = get_peft_model(self.llm, lora)

            def reward(replies: list[str], rows_: list[dict]) -> np.ndarray:
                return profile_ndcg(self.embedder.encode(replies), self.embedder.item_matrix(self.texts), rows_, c.reward_k)

            rl = RLSOConfig(eta=c.eta, gamma=c.gamma, epochs=c.rlso_epochs, minibatch=c.rlso_batch_size,
                            max_new_tokens=c.profile_tokens, lr=c.rlso_lr)
            self.rlso = RLSOTrainer(self.llm, self.tokenizer, rl, reward_fn=reward, seed=self.seed)
        cursor = 0
        for k in range(c.iterations):
            if self.train_embedder:
                profiles = self.write_profiles(prompts, "train_profiles")
                losses = train_infonce(self.embedder, profiles, [self.texts[r["target"]] for r in answer_rows], steps=c.steps,
                                       batch_size=min(c.batch_size, len(profiles)), lr=c.lr, weight_decay=c.weight_decay,
                                       seed=self.seed + k)
                self.cl_losses.extend(losses)
            if self.train_llm:
                for _ in range(c.rlso_batches):
                    take = [(cursor + i) % len(prompts) for i in range(c.rlso_batch_size)]
                    cursor += c.rlso_batch_size
                    record = self.rlso.step([prompts[i] for i in take], [answer_rows[i] for i in take])
                    self.curves.append({"iteration": k, **record})
        if self.train_llm:
            self.rlso_truncated = self.rlso.truncated
        self.llm.eval()

    def _rlso_job(self, prompts: list[str], answer_rows: list[dict], c: LangPTuneConfig) -> None:
        """The K x T RLSO batches as one ``rlso`` training job on ``c.processes`` processes, in the
        in-process loop's order (batch s of process p: histories from (s * processes + p) * batch size,
        cycling); the trained adapter merged into the profile writer."""
        import json
        import tempfile

        import torch

        from recbench.llm.models import resolve_model
        from recbench.llm.training import LOG_FILE, TrainJob, load_model, trained_checkpoint

        reward = {"name": "profile_retrieval", "weight": 1.0,
                  "args": {"embedder": c.embedder, "items": str(saved_matrix(self.embedder.item_matrix(self.texts))),
                           "k": c.reward_k, "max_seq_length": c.max_seq_length, "batch_size": c.encode_batch_size}}
        options = {"eta": c.eta, "gamma": c.gamma, "epochs": c.rlso_epochs, "minibatch": c.rlso_batch_size,
                   "max_new_tokens": c.profile_tokens, "rewards": (reward,), "batches": c.iterations * c.rlso_batches,
                   "prompts_per_step": c.rlso_batch_size}
        with tempfile.TemporaryDirectory() as tmp:
            rows_file = Path(tmp) / "rows.jsonl"
            rows_file.write_text("".join(json.dumps({"prompt": p, "answer_row": json.dumps(
                {"target": r["target"], "history": [int(i) for i in r["history"]]})}) + "\n" for p, r in zip(prompts, answer_rows)))
            job = TrainJob("rlso", str(resolve_model(c.model).path), str(rows_file), lr=c.rlso_lr, seed=self.seed,
                           lora_rank=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=0.0, options=options,
                           gradient_checkpointing=False)
            checkpoint = trained_checkpoint(job, processes=c.processes)
        self.llm, self.tokenizer = load_model(checkpoint.path, torch.float32)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        log = json.loads((checkpoint.path / LOG_FILE).read_text())
        self.curves = [{"iteration": (h["step"] - 1) // c.rlso_batches, **{k: v for k, v in h.items() if k != "step"}}
                       for h in log["history"]]
        self.rlso_truncated = sum(h.get("replies_truncated", 0) for h in log["history"])
        self.rlso_job = {"processes": c.processes, "checkpoint": checkpoint.path.name, "reused": checkpoint.reused,
                         "train_seconds": log.get("train_seconds")}
        self.llm.eval()

    # --- answering ------------------------------------------------------------------------------

    def _profiles(self, examples: ExampleSet) -> list[str]:
        hist = examples.histories
        prompts = self.prompts_for([hist.items_of(i) for i in range(len(examples))], [None] * len(examples))
        return self.write_profiles(prompts)

    def score(self, examples: ExampleSet) -> np.ndarray:
        from recbench.llm.embed import rank

        return rank(self.embedder.encode(self._profiles(examples)), self.embedder.item_matrix(self.texts)).astype(np.float64)

    def predict(self, examples: ExampleSet, contract: Any) -> Predictions:
        from recbench.contracts import FULL_CATALOG
        from recbench.llm.embed import rank

        if contract.kind != FULL_CATALOG:
            return super().predict(examples, contract)
        profiles = self._profiles(examples)
        scores = rank(self.embedder.encode(profiles), self.embedder.item_matrix(self.texts), exclude=examples.histories)
        out = top_k(scores.astype(np.float64), contract.k)
        out.extras = [{"profile": p} for p in profiles]
        out.diagnostics = {"profiles_truncated_rate": self.counts["profiles_truncated"] / max(1, self.counts["profiles"])}
        return out

    def describe(self) -> dict:
        c = self.resolved
        out = {"resolved": {k: getattr(c, k) for k in c.presets[c.preset]}, "embedder": self.embedder.provenance,
               "item_text": self.text_counts, "profile_counts": dict(self.counts),
               "item_matrix_builds": self.embedder.item_matrix_builds}
        if self.curves:
            out["rlso_curve"] = [{k: round(v, 5) if isinstance(v, float) else v for k, v in r.items()} for r in self.curves]
            out["rlso_replies_truncated"] = self.rlso_truncated
        if self.rlso_job:
            out["rlso_job"] = self.rlso_job
        if self.cl_losses:
            out["infonce_loss"] = [round(x, 4) for x in self.cl_losses]
        return out


class LangPTuneCL(LangPTune0):
    name = "langptune_cl"
    description = "LangPTune-CL: profiles from a frozen LLM; the embedder trained with InfoNCE on (profile, next item)"
    train_embedder = True


class LangPTuneRLSO(LangPTune0):
    """Its RLSO runs as a training job under ``accelerate launch`` with ``processes`` above 1 (the embedder
    is frozen, so the K x T batches are one job); ``langptune`` cannot, see the module docstring."""

    name = "langptune_rlso"
    description = "LangPTune-RLSO: the profile writer (LoRA) trained with RLSO on the retrieval NDCG; embedder frozen"
    Config = LangPTuneRLSOConfig
    train_llm = True


class LangPTune(LangPTune0):
    name = "langptune"
    description = "LangPTune: K rounds of J InfoNCE batches (embedder) then T RLSO batches (profile writer, LoRA)"
    train_embedder = True
    train_llm = True


@hookimpl
def recbench_register_methods(register):
    for method in (LangPTune0, LangPTuneCL, LangPTuneRLSO, LangPTune):
        register(method)


@hookimpl
def recbench_register_rewards(register):
    register("profile_retrieval", profile_retrieval_reward)
