"""A loopback HTTP server speaking the Anthropic Messages and OpenAI chat-completions shapes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GOOD = {
    "summary": "Talks mostly about work and sleep.",
    "themes": [{"theme": "work", "messages": 6}],
    "recurring_topics": [{"topic": "late nights", "messages": 3}],
    "sentiment": {"label": "mixed", "score": -0.1, "trend": "steady"},
    "notable_facts": ["works as a nurse"],
    "confidence": 0.8,
}


class LLMStub:
    """Answers per a script of modes (then `default`): good, fenced, malformed, error500.

    With `gated`, each request waits for `release()` before answering, so a test can hold a worker
    thread busy for as long as it needs.
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.default = "good"
        self.requests: list[dict] = []
        self.gated = False
        self._gate = threading.Semaphore(0)
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
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
                if mode == "error500":
                    self._send(500, {"error": {"type": "overloaded_error", "message": "try later"}})
                    return
                text = {
                    "good": json.dumps(GOOD),
                    "fenced": "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```",
                    "malformed": "I think this person is lovely but I won't do JSON.",
                }[mode]
                if self.path == "/v1/messages":
                    payload = {
                        "id": "msg_stub",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [{"type": "text", "text": text}],
                        "stop_reason": "end_turn",
                        "usage": {"input_tokens": 1500, "output_tokens": 500},
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
                        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
                    }
                self._send(200, payload)

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
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

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._gate.release()

    def close(self) -> None:
        self.gated = False
        self.release(100)
        self.server.shutdown()
        self.server.server_close()
