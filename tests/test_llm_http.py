"""The OpenAI-compatible HTTP backend against loopback servers: answers, retries, clear errors, limits."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from recbench.errors import ConfigError, RecbenchError
from recbench.llm.backend import DecodingParams
from recbench.llm.http import LLMRequestError, OpenAIBackend, split_model_url

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Pick one."}]


def completion(*texts: str, tokens: int = 4) -> dict:
    return {
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 10, "completion_tokens": tokens * len(texts)},
    }


class ScriptedServer:
    """A loopback server answering each POST with the next ``(status, body, delay_s)`` step (the last repeats)."""

    def __init__(self, *steps: tuple[int, object, float]) -> None:
        self.steps, self.requests, self.headers = list(steps), [], []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append((self.path, body))
                    server.headers.append(dict(self.headers))
                    status, payload, delay = server.steps[min(len(server.requests), len(server.steps)) - 1]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                time.sleep(delay)
                with server.lock:
                    server.in_flight -= 1
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def backend(url: str, **options) -> OpenAIBackend:
    return OpenAIBackend.from_url(f"{url}#test/model", **{"timeout": 2.0, "backoff_s": 0.01, "max_retries": 2, **options})


def test_generation_sends_the_decoding_parameters_and_reads_the_answers():
    with ScriptedServer((200, completion("3</answer>", tokens=2), 0.0)) as server:
        params = DecodingParams(max_new_tokens=7, forced_prefix="<answer>", stop=("</answer>",), seed=5, top_k=20)
        out = backend(server.url).generate([PROMPT, PROMPT], params)
    assert [[g.text for g in row] for row in out] == [["3"], ["3"]]  # the stop string is cut
    assert out[0][0].n_tokens == 2
    path, body = server.requests[0]
    assert path == "/v1/chat/completions"
    assert body["model"] == "test/model" and body["max_tokens"] == 7 and body["seed"] == 5 and body["top_k"] == 20
    assert body["stop"] == ["</answer>"] and body["temperature"] == 0.0
    # the forced prefix is an assistant turn the server continues
    assert body["messages"][-1] == {"role": "assistant", "content": "<answer>"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert "repetition_penalty" not in body  # vLLM extensions only when used


def test_a_repeated_forced_prefix_is_stripped_and_several_sequences_share_the_usage():
    with ScriptedServer((200, completion("Prediction: <option> red", "blue", tokens=3), 0.0)) as server:
        params = DecodingParams(forced_prefix="Prediction: <option>", temperature=0.7, num_return_sequences=2)
        out = backend(server.url).generate([PROMPT], params)
    assert [g.text for g in out[0]] == [" red", "blue"]
    assert [g.n_tokens for g in out[0]] == [3, 3]
    assert server.requests[0][1]["n"] == 2


def test_a_server_error_is_retried_then_succeeds():
    with ScriptedServer((500, {"error": "overloaded"}, 0.0), (200, completion("ok"), 0.0)) as server:
        out = backend(server.url).generate([PROMPT], DecodingParams())
    assert out[0][0].text == "ok"
    assert len(server.requests) == 2


def test_a_client_error_fails_at_once_with_url_status_and_body():
    with ScriptedServer((400, {"error": "unknown model test/model"}, 0.0)) as server:
        with pytest.raises(LLMRequestError) as info:
            backend(server.url).generate([PROMPT], DecodingParams())
    message = str(info.value)
    assert f"{server.url}/chat/completions" in message and "HTTP 400" in message
    assert "unknown model test/model" in message and "model name" in message
    assert len(server.requests) == 1


def test_rate_limits_are_retried_a_bounded_number_of_times():
    with ScriptedServer((429, {"error": "slow down"}, 0.0)) as server:
        with pytest.raises(LLMRequestError, match=r"after 3 attempt\(s\).*HTTP 429"):
            backend(server.url, max_retries=2).generate([PROMPT], DecodingParams())
    assert len(server.requests) == 3


def test_a_server_slower_than_the_timeout_gives_a_clear_error_after_bounded_retries():
    with ScriptedServer((200, completion("late"), 1.0)) as server:
        start = time.perf_counter()
        with pytest.raises(LLMRequestError, match=r"after 2 attempt\(s\).*0.2s timeout"):
            backend(server.url, timeout=0.2, max_retries=1).generate([PROMPT], DecodingParams())
        elapsed = time.perf_counter() - start
    assert elapsed < 0.9
    assert len(server.requests) == 2


def test_an_unreachable_server_names_the_url():
    with ScriptedServer((200, completion("x"), 0.0)) as server:
        url = server.url
    with pytest.raises(LLMRequestError, match="127.0.0.1.*connection failed"):
        backend(url, max_retries=1).generate([PROMPT], DecodingParams())


def test_an_answer_that_is_not_json_is_reported():
    with ScriptedServer((200, "<html>login page</html>", 0.0)) as server:
        with pytest.raises(LLMRequestError, match="not JSON.*login page"):
            backend(server.url).generate([PROMPT], DecodingParams())


def test_concurrency_is_limited_and_order_is_kept():
    with ScriptedServer((200, completion("same"), 0.05)) as server:
        out = backend(server.url, max_workers=2).generate([PROMPT] * 6, DecodingParams())
    assert len(out) == 6 and server.max_in_flight == 2


def test_the_api_key_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RECBENCH_LLM_API_KEY", "sk-test")
    with ScriptedServer((200, completion("x"), 0.0)) as server:
        backend(server.url).generate([PROMPT], DecodingParams())
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_scoring_points_to_the_local_backend():
    with pytest.raises(RecbenchError, match="local model"):
        OpenAIBackend("http://127.0.0.1:9/v1", "m").score([PROMPT], [["a", "b"]])


@pytest.mark.parametrize("spec", ["http://127.0.0.1:8000/v1", "127.0.0.1:8000/v1#m", "http://h/v1#  "])
def test_model_urls_need_a_scheme_and_a_served_name(spec):
    with pytest.raises(ConfigError, match="SERVED_MODEL_NAME"):
        split_model_url(spec)


def test_model_url_is_split_at_the_hash():
    assert split_model_url("https://h:1/v1/#Qwen/Qwen3-32B") == ("https://h:1/v1", "Qwen/Qwen3-32B")


def test_zero_shot_reranks_through_a_served_model_and_its_cache():
    import numpy as np

    from recbench.plugins.llm.zero_shot import ZeroShot
    from recbench.testing import tiny_task

    task, data = tiny_task("rerank")
    batch = data.test_inputs.take(np.arange(4))
    with ScriptedServer((200, completion("2", tokens=1), 0.0)) as server:
        config = ZeroShot.Config(model=f"{server.url}#served/model", output="number", max_history_tokens=100)
        for _ in range(2):  # the second run is answered from the cache
            method = ZeroShot(config)
            method.fit(data.fit)
            preds = method.predict(batch, task.contract())
    task.contract().validate(preds, batch, data.fit.catalog, "zero_shot")
    np.testing.assert_array_equal(preds.items[:, 0], batch.candidates[:, 1])
    assert preds.diagnostics["valid_output_rate"] == 1.0 and preds.extras[0]["llm_output"] == "<answer>2"
    assert len(server.requests) == 4
    assert method.describe() == {"backend": "openai-compatible:served/model", "history_tokens_counted_by": "whitespace words"}
    assert server.requests[0][1]["messages"][-1] == {"role": "assistant", "content": "<answer>"}
