"""A loopback HTTP server speaking the Anthropic Messages and OpenAI chat-completions shapes.

It keeps what it saw, as a rate-limited provider would count it: every request with its arrival
time and the tokens it answered with, so a test can ask for the most calls and tokens it saw in
any window of a given length (`busiest`) and per fixed window (`per_window`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = {
    "summary": "Talks mostly about work and sleep.",
    "themes": [{"theme": "work", "messages": 6}],
    "recurring_topics": [{"topic": "late nights", "messages": 3}],
    "sentiment": {"label": "mixed", "score": -0.1, "trend": "steady"},
    "notable_facts": ["works as a nurse"],
    "confidence": 0.8,
}


@dataclass(frozen=True)
class Seen:
    """One request as the stub counted it."""

    at: float  # arrival, time.time()
    status: int
    tokens_in: int
    tokens_out: int
    prompt: str

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


class LLMStub:
    """Answers per a script of modes (then `default`): good, fenced, malformed, error500,
    rate_limited (429 with `Retry-After: retry_after`), overloaded (Anthropic's 529, same header).

    Usage: fixed per shape (Anthropic 1500 + 500, OpenAI 1200 + 300), or with
    `usage_from_prompt` one token per 4 characters of the system and user text plus `answer_tokens`
    (at most the request's max_tokens), as a tokenizer of English would count it.

    With `gated`, each request waits for `release()` before answering, so a test can hold a worker
    thread busy for as long as it needs. `delay` seconds pass before each answer.
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.default = "good"
        self.requests: list[dict] = []
        self.seen: list[Seen] = []
        self.retry_after = 2.0
        self.usage_from_prompt = False
        self.answer_tokens = 300
        self.delay = 0.0
        self.gated = False
        self._gate = threading.Semaphore(0)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                arrived = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                    mode = stub.script.pop(0) if stub.script else stub.default
                if stub.gated:
                    stub._gate.acquire(timeout=60)
                if stub.delay:
                    time.sleep(stub.delay)
                prompt = _prompt_text(body)
                if mode in ("rate_limited", "overloaded"):
                    stub._count(Seen(arrived, 429 if mode == "rate_limited" else 529, 0, 0, prompt))
                    kind = "rate_limit_error" if mode == "rate_limited" else "overloaded_error"
                    self._send(
                        429 if mode == "rate_limited" else 529,
                        {"type": "error", "error": {"type": kind, "message": "slow down"}},
                        {"Retry-After": f"{stub.retry_after:g}"},
                    )
                    return
                if mode == "error500":
                    stub._count(Seen(arrived, 500, 0, 0, prompt))
                    self._send(500, {"error": {"type": "overloaded_error", "message": "try later"}})
                    return
                text = {
                    "good": json.dumps(GOOD),
                    "fenced": "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```",
                    "malformed": "I think this person is lovely but I won't do JSON.",
                }[mode]
                anthropic = self.path == "/v1/messages"
                if stub.usage_from_prompt:
                    tokens_in = math.ceil(len(prompt) / 4)
                    tokens_out = min(stub.answer_tokens, int(body.get("max_tokens", stub.answer_tokens)))
                else:
                    tokens_in, tokens_out = (1500, 500) if anthropic else (1200, 300)
                stub._count(Seen(arrived, 200, tokens_in, tokens_out, prompt))
                if anthropic:
                    payload = {
                        "id": "msg_stub",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
                    }
                else:
                    payload = {
                        "id": "chatcmpl-stub",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": tokens_in,
                            "completion_tokens": tokens_out,
                            "total_tokens": tokens_in + tokens_out,
                        },
                    }
                self._send(200, payload)

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def answered(self) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.seen if seen.status == 200]

    def busiest(self, window: float) -> tuple[int, int]:
        """The most requests and the most tokens that arrived within any `window` seconds."""
        with self._lock:
            seen = sorted(self.seen, key=lambda s: s.at)
        most_calls = most_tokens = tokens = start = 0
        for end, last in enumerate(seen):
            tokens += last.tokens
            while last.at - seen[start].at >= window:
                tokens -= seen[start].tokens
                start += 1
            most_calls, most_tokens = max(most_calls, end - start + 1), max(most_tokens, tokens)
        return most_calls, most_tokens

    def per_window(self, window: float) -> dict[int, tuple[int, int]]:
        """Requests and tokens per fixed window (window number since the epoch -> counts)."""
        counts: dict[int, tuple[int, int]] = {}
        with self._lock:
            for seen in self.seen:
                calls, tokens = counts.get(int(seen.at // window), (0, 0))
                counts[int(seen.at // window)] = (calls + 1, tokens + seen.tokens)
        return counts

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._gate.release()

    def close(self) -> None:
        self.gated = False
        self.release(100)
        self.server.shutdown()
        self.server.server_close()


def _prompt_text(body: dict) -> str:
    """The system and user text of either shape."""
    parts = [body.get("system") or ""]
    for message in body.get("messages", []):
        content = message.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts)
