"""An OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, OpenAI): chat completions.

Model strings look like ``http://127.0.0.1:8000/v1#Qwen/Qwen3-32B``: the base URL, then after
``#`` the served model name. Requests run in a thread pool (``max_workers`` at once); 429, 5xx,
timeouts and connection errors are retried ``max_retries`` times with exponential backoff
(``backoff_s * 2**attempt``, no jitter, so reruns behave alike); other HTTP errors fail at once
with the URL, status and the start of the server's answer. The API key comes from
``RECBENCH_LLM_API_KEY`` or else ``OPENAI_API_KEY``.

A forced prefix is sent as a final assistant message with ``continue_final_message`` (vLLM and
SGLang continue it); a server that ignores this and repeats the prefix has it stripped.
Scoring continuations needs prompt log-probabilities that chat completions do not give, so
:meth:`OpenAIBackend.score` refuses with an error pointing to the local backend.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from recbench.errors import ConfigError, RecbenchError
from recbench.llm.backend import DecodingParams, Generation, Normalize, Prompt, check_prompts, truncate_at_stop

API_KEY_ENVS = ("RECBENCH_LLM_API_KEY", "OPENAI_API_KEY")
RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_EXCERPT = 300


class LLMRequestError(RecbenchError):
    """An LLM server refused a request, answered garbage, or could not be reached."""


def split_model_url(spec: str) -> tuple[str, str]:
    """``"http://host:8000/v1#org/model"`` -> ``("http://host:8000/v1", "org/model")``."""
    base, sep, model = spec.partition("#")
    if not base.startswith(("http://", "https://")) or not sep or not model.strip():
        raise ConfigError(
            f"model {spec!r}: an HTTP model must look like 'http://HOST:PORT/v1#SERVED_MODEL_NAME' "
            "(the part after '#' is the name the server serves, e.g. http://127.0.0.1:8000/v1#Qwen/Qwen3-32B)."
        )
    return base.rstrip("/"), model.strip()


class OpenAIBackend:
    """Generation through ``POST {base_url}/chat/completions``; see the module docstring."""

    def __init__(
        self, base_url: str, model: str, *, timeout: float = 120.0, max_retries: int = 4, backoff_s: float = 1.0,
        max_workers: int = 8, api_key: str | None = None,
    ) -> None:
        if timeout <= 0 or max_retries < 0 or backoff_s < 0 or max_workers < 1:
            raise ConfigError(
                f"OpenAIBackend({base_url!r}): need timeout > 0, max_retries >= 0, backoff_s >= 0, max_workers >= 1; "
                f"got timeout={timeout}, max_retries={max_retries}, backoff_s={backoff_s}, max_workers={max_workers}."
            )
        self.base_url, self.model = base_url.rstrip("/"), model
        self.timeout, self.max_retries, self.backoff_s, self.max_workers = timeout, max_retries, backoff_s, max_workers
        self.api_key = api_key if api_key is not None else next(
            (os.environ[name] for name in API_KEY_ENVS if os.environ.get(name)), None
        )
        # the served name stands for the weights; the URL is left out so a moved server keeps its cache
        self.fingerprint = f"openai-compatible:{model}"

    @classmethod
    def from_url(cls, spec: str, **options: Any) -> OpenAIBackend:
        """Build from ``"http://HOST:PORT/v1#SERVED_MODEL_NAME"``; ``options`` go to the constructor."""
        base_url, model = split_model_url(spec)
        return cls(base_url, model, **options)

    # --- the Backend protocol ----------------------------------------------------------------

    def generate(self, prompts: Sequence[Prompt], params: DecodingParams) -> list[list[Generation]]:
        check_prompts(prompts, f"OpenAIBackend({self.base_url}#{self.model}).generate")
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(prompts))) as pool:
            return list(pool.map(lambda prompt: self._generate_one(prompt, params), prompts))

    def score(
        self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]], *,
        forced_prefix: str = "", normalize: Normalize = "mean",
    ) -> list[np.ndarray]:
        raise RecbenchError(
            f"OpenAIBackend({self.base_url}#{self.model}).score: scoring continuations by log-likelihood needs "
            "the prompt's token log-probabilities, which chat completions do not return. Use a local model "
            "(e.g. model=smollm2-135m, a hub id or a folder) for mode=score, or mode=generate with this server."
        )

    # --- requests ----------------------------------------------------------------------------

    def request_body(self, prompt: Prompt, params: DecodingParams) -> dict[str, Any]:
        """The JSON body of one chat completion request."""
        messages = [dict(m) for m in prompt]
        body: dict[str, Any] = {
            "model": self.model, "messages": messages, "max_tokens": params.max_new_tokens,
            "temperature": params.temperature, "top_p": params.top_p, "n": params.num_return_sequences,
            "seed": params.seed,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        # vLLM/SGLang extensions, sent only when used so that strict servers accept the request
        if params.top_k:
            body["top_k"] = params.top_k
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.forced_prefix:
            messages.append({"role": "assistant", "content": params.forced_prefix})
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    def _generate_one(self, prompt: Prompt, params: DecodingParams) -> list[Generation]:
        answer = self.post("/chat/completions", self.request_body(prompt, params))
        try:
            texts = [choice["message"]["content"] or "" for choice in answer["choices"]]
        except (KeyError, TypeError) as exc:
            raise LLMRequestError(
                f"POST {self.base_url}/chat/completions answered without choices[].message.content "
                f"(missing {exc}): {json.dumps(answer)[:_EXCERPT]!r}. Is this an OpenAI-compatible server?"
            ) from None
        completion_tokens = (answer.get("usage") or {}).get("completion_tokens")
        out = []
        for text in texts:
            if params.forced_prefix and text.startswith(params.forced_prefix):
                text = text[len(params.forced_prefix) :]
            text, _ = truncate_at_stop(text, params.stop)
            # usage counts all choices together; split it evenly when several were asked for
            n_tokens = round(completion_tokens / len(texts)) if completion_tokens is not None else len(text.split())
            out.append(Generation(text, int(n_tokens)))
        return out

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to ``base_url + path`` with retries; the decoded JSON answer."""
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = ""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                excerpt = exc.read()[:_EXCERPT].decode("utf-8", "replace")
                if exc.code in RETRY_STATUSES:
                    last_error = f"HTTP {exc.code}: {excerpt!r}"
                    continue
                raise LLMRequestError(f"POST {url} failed with HTTP {exc.code}: {excerpt!r}. {_hint(exc.code)}") from None
            except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                last_error = (
                    f"no answer within the {self.timeout:g}s timeout" if isinstance(reason, TimeoutError)
                    else f"connection failed: {reason}"
                )
                continue
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise LLMRequestError(
                    f"POST {url} answered with something that is not JSON: {raw[:_EXCERPT]!r}. "
                    "Check that the URL points at the server's /v1 API."
                ) from None
        raise LLMRequestError(
            f"POST {url} failed after {attempts} attempt(s); last error: {last_error}. Check that the server is "
            "running and reachable, or allow more time (timeout, max_retries)."
        )


def _hint(status: int) -> str:
    if status in (401, 403):
        return f"Set the API key in {' or '.join(API_KEY_ENVS)}."
    if status == 404:
        return "Check that the base URL ends with /v1 and that the model name after '#' is one the server serves."
    return "The server rejected the request: check the model name after '#' and the decoding parameters."
