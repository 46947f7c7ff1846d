"""Documented per-unit costs of the embedded models on a CPU: what a run's plan estimates from
before anything was measured on the machine (after one run, its measured costs take over).

The numbers were measured on this project's 2-core machines, fp32 (see also the README's "LLM
methods run on the CPU" paragraph): SmolLM2-135M reads a prompt at about 200 tokens/s
(an artwork prompt of about 2,000 tokens in about 10 s), generates 12.5 tokens/s alone and 68
tokens/s over a batch of 8, and takes 4.7 s per SFT+LoRA step and 8.6 s per DPO step at 2 rows of
about 130 tokens. Other models scale by their compute per token against SmolLM2's. Prompts are
counted as the history budget plus ``PROMPT_OVERHEAD_TOKENS`` (instructions and options). No cost
is documented for a GPU, a model behind an HTTP server, or a model not listed here.
"""

from __future__ import annotations

BASIS = "documented: SmolLM2-135M on 2 CPU cores"
RELATIVE_COMPUTE = {"smollm2-135m": 1.0, "qwen2.5-coder-0.5b": 3.0, "tiny-random-llama": 0.002}
PREFILL_TOKENS_PER_S = 200.0
DECODE_TOKENS_PER_S = {1: 12.5, 8: 68.0}  # all rows of a batch together
PROMPT_OVERHEAD_TOKENS = 900  # instructions and the options' text (artwork: 4-40 captions)
TRAIN_ROW_S_PER_TOKEN = {"sft": 4.7 / 2 / 130, "dpo": 8.6 / 2 / 130}  # one row's forward and backward
COMPLETION_TOKENS = 100  # a training row's answer (a justification and the option)


def documented(model: str, device: str) -> float | None:
    """The model's compute per token against SmolLM2-135M, when a CPU cost is documented for it."""
    if device != "cpu" or model.startswith(("http://", "https://")):
        return None
    return RELATIVE_COMPUTE.get(model)


def generation_s(model: str, device: str, history_tokens: int, new_tokens: int, batch_size: int) -> float | None:
    """Seconds per prompt answered: reading the prompt, then ``new_tokens`` at most (an upper bound)."""
    scale = documented(model, device)
    if scale is None:
        return None
    decode = DECODE_TOKENS_PER_S[8] if batch_size >= 8 else DECODE_TOKENS_PER_S[1]
    return scale * ((history_tokens + PROMPT_OVERHEAD_TOKENS) / PREFILL_TOKENS_PER_S + new_tokens / decode)


def scoring_s(model: str, device: str, history_tokens: int) -> float | None:
    """Seconds per prompt whose options are ranked by likelihood: about one reading of the prompt."""
    scale = documented(model, device)
    return None if scale is None else scale * (history_tokens + PROMPT_OVERHEAD_TOKENS) / PREFILL_TOKENS_PER_S


def train_step_s(model: str, device: str, trainer: str, rows_per_step: int, history_tokens: int) -> float | None:
    """Seconds per optimizer step of ``rows_per_step`` rows (SFT and DPO; none for on-policy RL)."""
    scale = documented(model, device)
    if scale is None or trainer not in TRAIN_ROW_S_PER_TOKEN:
        return None
    tokens = history_tokens + PROMPT_OVERHEAD_TOKENS + COMPLETION_TOKENS
    return scale * rows_per_step * tokens * TRAIN_ROW_S_PER_TOKEN[trainer]
