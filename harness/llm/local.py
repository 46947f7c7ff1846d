"""The local backend: a transformers causal LM on CPU or GPU, batched generation and candidate scoring.

Generation templates each prompt with the tokenizer's chat template, appends the forced prefix,
and decodes left-padded batches of similar length. The rows of a batch that sample one prompt
several times (``num_return_sequences``) share one forward pass over that prompt: its KV cache is
computed once and copied to each row before decoding. Every decoding parameter comes from
:class:`DecodingParams`: a fresh ``GenerationConfig`` sets the deterministic ones, and sampling
(temperature, top-k, top-p) runs as explicit logits processors ending in a per-row seeded
Gumbel-max draw, so a prompt's samples depend on its seed and text, not on its batch neighbours or
on the model's own ``generation_config.json`` (which is replaced by a neutral one at load).

Scoring runs each example's shared context (templated prompt + forced prefix) once, keeps its KV
cache, and scores all its continuations in one batched forward pass that reuses that cache.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from recbench import progress
from recbench.errors import ConfigError
from recbench.llm.backend import (
    DecodingParams,
    Generation,
    ModelError,
    Normalize,
    Prompt,
    check_normalize,
    check_prompts,
    truncate_at_stop,
)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}  # fmt: skip
SCORE_BATCH_TOKENS = 2048  # continuation tokens per scoring forward pass: bounds the (tokens x vocab) logits
# padded prompt tokens per generation batch: a batch stops growing at batch_size rows or at this
# many (distinct prompts x longest prompt) tokens (a prompt sampled n times is run once). Batching
# long prompts buys little on a CPU, where one forward is compute-bound, and padding them to their
# longest neighbour costs a lot.
GENERATE_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bf16 on CUDA GPUs that support it, fp32 elsewhere (CPU half precision is slow and lossy)."""
    if dtype == "auto":
        cuda = device.startswith("cuda") and torch.cuda.is_available()
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not known; use auto, {', '.join(DTYPES)}.")
    return DTYPES[dtype]


class _SeededSampler(LogitsProcessor):
    """Draws each row from softmax(scores) with the row's own generator (Gumbel-max via exponentials)."""

    def __init__(self, seeds: list[int], device: torch.device) -> None:
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        noise = torch.stack([torch.empty_like(scores[0]).exponential_(generator=g) for g in self.generators])
        # argmax(s - log E), E ~ Exp(1), is a draw from softmax(s); greedy decoding then takes it
        return scores - noise.log()


class _StopStrings(StoppingCriteria):
    """Ends a row once its generated text (after ``start``) contains any stop string."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], start: int) -> None:
        self.tokenizer, self.stop, self.start = tokenizer, stop, start

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


def _at_least_fp32(tensor: torch.Tensor) -> torch.Tensor:
    # half-precision log-softmax loses digits; float64 models (used to test exactness) stay float64
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def _row_seed(seed: int, text: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{index}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class TransformersBackend:
    """A :class:`~recbench.llm.backend.Backend` over a local transformers model; see the module docstring."""

    def __init__(self, model: Any, tokenizer: Any, *, fingerprint: str, batch_size: int = 8, name: str = "") -> None:
        if batch_size < 1:
            raise ConfigError(f"TransformersBackend: batch_size={batch_size}; need >= 1.")
        if not tokenizer.chat_template:
            raise ModelError("the model's tokenizer has no chat template; recbench prompts are chat messages.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.fingerprint, self.batch_size, self.name = fingerprint, batch_size, name
        eos = model.config.eos_token_id if model.config.eos_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        # the checkpoint's generation_config.json may carry sampling defaults: none may leak into a run
        model.generation_config = GenerationConfig(eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id)

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, dtype: str = "auto", device: str = "auto", batch_size: int = 8, name: str = ""
    ) -> TransformersBackend:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from recbench.llm.models import folder_digest

        device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype).to(device)
        dtype_name = str(torch_dtype).removeprefix("torch.")
        fingerprint = f"transformers:{folder_digest(Path(folder))[:24]}:{dtype_name}"
        return cls(model, tokenizer, fingerprint=fingerprint, batch_size=batch_size, name=name or str(folder))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def context(self, prompt: Prompt, forced_prefix: str = "") -> str:
        """The text the model continues: the templated prompt, the assistant turn's start, the prefix."""
        if prompt[-1]["role"] == "assistant":
            raise ConfigError(
                "a prompt ends with an assistant message; end it with the user's turn and pass the start of the "
                "answer as forced_prefix."
            )
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) + forced_prefix

    def _encode(self, texts: list[str], extra: int, where: str) -> list[list[int]]:
        ids = self.tokenizer(texts, add_special_tokens=False).input_ids  # the template wrote the special tokens
        for i, seq in enumerate(ids):
            if self.max_length and len(seq) + extra > self.max_length:
                raise ConfigError(
                    f"{where}: prompt {i} is {len(seq)} tokens (+{extra}), over the model's {self.max_length}; "
                    "shorten the history in the prompt."
                )
        return ids

    # --- generation ----------------------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: DecodingParams) -> list[list[Generation]]:
        check_prompts(prompts, "TransformersBackend.generate")
        texts = [self.context(p, params.forced_prefix) for p in prompts]
        ids = self._encode(texts, params.max_new_tokens, "TransformersBackend.generate")
        rows = [(i, j) for i in range(len(texts)) for j in range(params.num_return_sequences)]
        order = sorted(range(len(rows)), key=lambda r: len(ids[rows[r][0]]))  # similar lengths pad less
        out: list[list[Generation]] = [[] for _ in texts]
        done: dict[tuple[int, int], Generation] = {}
        for batch in self._batches([rows[r] for r in order], [len(ids[rows[r][0]]) for r in order]):
            seeds = [_row_seed(params.seed, texts[i], j) for i, j in batch]
            done.update(zip(batch, self._generate_batch([ids[i] for i, _ in batch], seeds, params)))
            progress.advance(sum(j == 0 for _, j in batch))  # prompts answered, towards the method's open stage
        for (i, j), generation in sorted(done.items()):
            out[i].append(generation)
        return out

    def _batches(self, rows: list[tuple[int, int]], lengths: list[int]) -> list[list[tuple[int, int]]]:
        """Consecutive runs of ``rows`` (``(prompt, sample)``, sorted by ``lengths``) within the row and padded-token limits.

        The padded tokens of a batch are its distinct prompts times the longest: rows of one prompt share its prefill.
        """
        budget = GENERATE_BATCH_TOKENS.get(self.device.type, GENERATE_BATCH_TOKENS["cuda"])
        batches: list[list[tuple[int, int]]] = []
        distinct: set[int] = set()
        for row, length in zip(rows, lengths):
            last = batches[-1] if batches else None
            if last is None or len(last) >= self.batch_size or len(distinct | {row[0]}) * length > budget:
                batches.append([row])
                distinct = {row[0]}
            else:
                last.append(row)
                distinct.add(row[0])
        return batches

    def _generate_batch(self, ids: list[list[int]], seeds: list[int], params: DecodingParams) -> list[Generation]:
        input_ids, mask = self._left_padded(ids)
        width = input_ids.shape[1]
        config = GenerationConfig(
            max_new_tokens=params.max_new_tokens, min_new_tokens=0, do_sample=False, num_beams=1,
            num_return_sequences=1, repetition_penalty=params.repetition_penalty, no_repeat_ngram_size=0,
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id, use_cache=True,
        )  # fmt: skip
        processors = LogitsProcessorList()
        if not params.greedy:
            processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
            processors.append(_SeededSampler(seeds, self.device))
        stopping = StoppingCriteriaList([_StopStrings(self.tokenizer, params.stop, width)] if params.stop else [])
        with torch.inference_mode():
            shared = self._shared_prefill(ids, input_ids, mask)
            output = self.model.generate(
                input_ids=input_ids, attention_mask=mask, generation_config=config,
                logits_processor=processors, stopping_criteria=stopping, **shared,
            )
        generations = []
        for row in output[:, width:].tolist():
            end = next((k for k, token in enumerate(row) if token in self.eos_ids or token == self.pad_id), len(row))
            text, stopped = truncate_at_stop(self.tokenizer.decode(row[:end], skip_special_tokens=True), params.stop)
            # the end-of-sequence token counts as generated; padding after a stop string does not
            generations.append(Generation(text, end + (1 if end < len(row) and not stopped else 0)))
        return generations

    def _left_padded(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask on the model's device, left-padded: every row's next token is in the last column."""
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _shared_prefill(self, ids: list[list[int]], input_ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """``generate``'s cache argument holding every row's prompt but its last token, run once per distinct prompt.

        Empty (``generate`` runs the prompts itself) when every row's prompt is distinct. Positions follow the
        attention mask as ``generate`` numbers them, so the rows decode as if ``generate`` had run the whole prompt.
        """
        slot: dict[tuple[int, ...], int] = {}
        owner = [slot.setdefault(tuple(seq), len(slot)) for seq in ids]
        if len(slot) == len(ids) or input_ids.shape[1] < 2:
            return {}
        from transformers import DynamicCache

        first = torch.tensor([owner.index(k) for k in range(len(slot))], device=self.device)
        prompt_ids, prompt_mask = input_ids[first, :-1], mask[first, :-1]
        positions = (prompt_mask.cumsum(-1) - 1).masked_fill(prompt_mask == 0, 0)
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True,
                   **{self._cache_argument: cache})
        cache.batch_select_indices(torch.tensor(owner, device=self.device))
        return {self._cache_argument: cache}

    @functools.cached_property
    def _cache_argument(self) -> str:
        # transformers 5.2x names the KV cache ``cache``; earlier 5.x releases ``past_key_values``
        return "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    # --- scoring -------------------------------------------------------------------------------

    def score(
        self,
        prompts: Sequence[Prompt],
        continuations: Sequence[Sequence[str]],
        *,
        forced_prefix: str = "",
        normalize: Normalize = "mean",
    ) -> list[np.ndarray]:
        check_prompts(prompts, "TransformersBackend.score")
        check_normalize(normalize, "TransformersBackend.score")
        if len(prompts) != len(continuations):
            raise ConfigError(
                f"TransformersBackend.score: {len(prompts)} prompts but {len(continuations)} continuation lists; "
                "pass one list of continuations per prompt."
            )
        out = []
        for i, (prompt, options) in enumerate(zip(prompts, continuations)):
            if isinstance(options, str):
                raise ConfigError(
                    f"TransformersBackend.score: continuations[{i}] is a string; pass a list of strings."
                )
            out.append(self._score_one(self.context(prompt, forced_prefix), list(options), normalize, i))
            progress.advance()
        return out

    def split_tokens(
        self, context: str, options: list[str], where: str
    ) -> tuple[list[int], list[list[int]], list[int]]:
        """``(shared prefix ids, each option's ids after it, where each option's scored tokens start)``.

        Each context+option is tokenized whole. Its scored tokens start after the longest run it shares
        with the context's own tokenization, so when the context's last characters merge with the
        option's first (a forced prefix ending in a space), the merged token is scored too.
        """
        context_ids = self._encode([context], 0, where)[0]
        full = self._encode([context + option for option in options], 0, where)
        starts = []
        for k, ids in enumerate(full):
            common = min(len(ids), len(context_ids))
            shared = next((j for j, (a, b) in enumerate(zip(ids, context_ids)) if a != b), common)
            if shared >= len(ids):
                raise ConfigError(f"{where}: continuation {k} ({options[k]!r}) adds no tokens; it must not be empty.")
            if shared == 0:  # only a one-token context can merge whole into an option
                raise ConfigError(f"{where}: the prompt shares no token with prompt + continuation {k}; lengthen it.")
            starts.append(shared)
        reuse = min(starts)  # every option shares context_ids[:reuse]
        return context_ids[:reuse], [ids[reuse:] for ids in full], [s - reuse for s in starts]

    def _score_one(self, context: str, options: list[str], normalize: Normalize, index: int) -> np.ndarray:
        if not options:
            return np.zeros(0)
        prefix, tails, starts = self.split_tokens(context, options, f"TransformersBackend.score (prompt {index})")
        chunks, chunk = [], []  # options whose tails fit SCORE_BATCH_TOKENS together
        for k, tail in enumerate(tails):
            if chunk and sum(len(tails[j]) for j in chunk) + len(tail) > SCORE_BATCH_TOKENS:
                chunks.append(chunk)
                chunk = []
            chunk.append(k)
        chunks.append(chunk)
        scores = np.empty(len(options))
        with torch.inference_mode():
            head = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
            first = _at_least_fp32(head.logits[0, -1])  # predicts every tail's first token
            for n, chunk in enumerate(chunks):
                # the forward pass appends to the cache it is given: later chunks need the prefix alone
                cache = head.past_key_values if n == len(chunks) - 1 else copy.deepcopy(head.past_key_values)
                scores[chunk] = self._score_packed(cache, first, len(prefix), [tails[k] for k in chunk],
                                                   [starts[k] for k in chunk], normalize)  # fmt: skip
        return scores

    def _score_packed(
        self, cache: Any, first: torch.Tensor, n_prefix: int, tails: list[list[int]], starts: list[int], normalize: str
    ) -> np.ndarray:
        """Scores tails packed into one sequence after the cached prefix, each seeing the prefix and itself.

        Packing (rather than a padded batch over copies of the prefix cache) feeds no padding and
        copies no keys or values; a block-diagonal causal mask and restarted positions make each
        tail's log-probabilities those of prefix + tail alone.
        """
        lengths = torch.tensor([len(t) for t in tails])
        offsets = torch.cumsum(lengths, 0) - lengths
        total = int(lengths.sum())
        owner = torch.repeat_interleave(torch.arange(len(tails)), lengths)  # which tail each packed token is
        local = torch.arange(total) - offsets[owner]  # its position within its tail
        ids = torch.tensor([tok for tail in tails for tok in tail], device=self.device)
        visible = torch.ones((total, n_prefix + total), dtype=torch.bool)
        visible[:, n_prefix:] = (owner[:, None] == owner[None, :]) & (local[None, :] <= local[:, None])
        dtype = self.model.dtype
        mask = torch.zeros(visible.shape, dtype=dtype).masked_fill_(~visible, torch.finfo(dtype).min)
        logits = self.model(
            input_ids=ids[None], position_ids=(n_prefix + local)[None].to(self.device),
            attention_mask=mask[None, None].to(self.device), past_key_values=cache, use_cache=True,
        ).logits[0]
        # a token is predicted by the one before it in its tail; a tail's first token by the prefix's end
        predicting = torch.cat([first[None], _at_least_fp32(logits[:-1])])
        predicting[offsets.to(self.device)] = first
        token_lp = predicting.gather(-1, ids[:, None]).squeeze(-1) - predicting.logsumexp(-1)
        scored = (local >= torch.tensor(starts)[owner]).to(self.device)
        sums = torch.zeros(len(tails), dtype=token_lp.dtype, device=self.device).index_add_(
            0, owner.to(self.device), token_lp * scored)
        if normalize == "mean":
            sums = sums / (lengths - torch.tensor(starts)).to(self.device)
        return sums.double().cpu().numpy()
