"""LLM providers behind one small interface, shared by every analyser and consolidator.

Two wire formats cover the field: Anthropic's Messages API and the OpenAI-compatible chat
completions endpoint (OpenAI itself, and local servers such as llama.cpp, vLLM or Ollama). These
transports are never called directly: `llm_flow.provider_from_settings` puts the configured one
behind the flow control (the shared per-minute limits, a provider's back-off, the users' daily
budgets, the usage ledger), so every model call of every family goes through that one place.
Token counts and cost travel back with the text so callers can store them with their job.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Protocol

from focus_app.config import Settings

ANTHROPIC_DEFAULT_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MODEL = "claude-3-5-haiku-latest"
OPENAI_DEFAULT_MODEL = "gpt-4o-mini"
# Answers that mean "too many requests, come back later": rate limited, unavailable, overloaded
# (Anthropic's 529). They carry no result, so they cost no tokens and use up no attempt.
BACKOFF_STATUSES = (429, 503, 529)
DEFAULT_BACKOFF_SECONDS = 10.0  # when such an answer names no Retry-After
MAX_BACKOFF_SECONDS = 600.0  # a Retry-After beyond this is read as this


class LLMError(Exception):
    """The provider failed or answered something unusable; `raw` keeps what it said."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        raw: str | None = None,
        completion: Completion | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.raw = raw
        # The paid-for answer that turned out unusable, so its tokens still count on the job.
        self.completion = completion


class MalformedOutput(LLMError):
    """The model answered, but not with the JSON asked for."""


class ProviderBackoff(LLMError):
    """The provider asked to be left alone for `retry_after` seconds (429 / 503 / 529)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after


class Throttled(LLMError):
    """The call's turn is `retry_in` seconds away (the shared limit, or a provider's back-off):
    hand the work back to the queue for that long. Not a failure, and not an attempt."""

    def __init__(self, retry_in: float, reason: str):
        super().__init__(f"waiting {retry_in:.1f}s for {reason}")
        self.retry_in = retry_in
        self.reason = reason


class OverBudget(LLMError):
    """The user's daily token budget cannot pay for the call: nothing was sent, and the work may
    run again at `resume_at`."""

    def __init__(self, message: str, resume_at: datetime):
        super().__init__(message, retryable=False)
        self.resume_at = resume_at


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_usd: float


@dataclass(frozen=True)
class Budget:
    """Whose daily token budget (LLM_USER_DAILY_TOKENS) pays for a call. `spent_on(day)` reads
    what the user's analyses spent on that UTC day from PostgreSQL, the count to start from when
    Redis has none (after a restart or flush)."""

    user_id: str
    spent_on: Callable[[date], int]


class LLMProvider(Protocol):
    """What the families call. `budget` names the user whose daily token budget pays (analyses)."""

    @property
    def name(self) -> str: ...

    def complete(
        self, system: str, prompt: str, *, max_tokens: int = 1024, budget: Budget | None = None
    ) -> Completion: ...


class Transport(Protocol):
    """One provider's wire format: a single request, no limits (llm_flow.LimitedProvider adds them)."""

    @property
    def name(self) -> str: ...

    def send(self, system: str, prompt: str, max_tokens: int) -> Completion: ...


@dataclass
class _HttpProvider:
    name: ClassVar[str]
    base_url: str
    api_key: str
    model: str
    timeout_seconds: float
    cost_input_per_mtok: float
    cost_output_per_mtok: float

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base_url.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            if exc.code in BACKOFF_STATUSES:
                raise ProviderBackoff(
                    f"{self.name} answered HTTP {exc.code}: {detail}", retry_after_seconds(exc.headers)
                ) from None
            retryable = exc.code in (408, 409) or exc.code >= 500
            raise LLMError(f"{self.name} answered HTTP {exc.code}: {detail}", retryable=retryable) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise LLMError(f"{self.name} unreachable: {exc}") from None
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.name} answered a body that is not JSON: {exc}") from None

    def _completion(self, text: str, model: str, tokens_in: int, tokens_out: int) -> Completion:
        cost = (tokens_in * self.cost_input_per_mtok + tokens_out * self.cost_output_per_mtok) / 1e6
        return Completion(
            text=text, model=model, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=round(cost, 6)
        )


class AnthropicProvider(_HttpProvider):
    name = "anthropic"

    def send(self, system: str, prompt: str, max_tokens: int) -> Completion:
        data = self._post(
            "/v1/messages",
            {
                "model": self.model,
                "max_tokens": max_tokens,
                "system": system,
                "messages": [{"role": "user", "content": prompt}],
            },
            {"x-api-key": self.api_key, "anthropic-version": ANTHROPIC_VERSION},
        )
        try:
            text = "".join(block["text"] for block in data["content"] if block.get("type") == "text")
            usage = data.get("usage", {})
            return self._completion(
                text,
                data.get("model", self.model),
                int(usage.get("input_tokens", 0)),
                int(usage.get("output_tokens", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(
                f"anthropic answered an unexpected shape: {exc}", raw=json.dumps(data)[:2000]
            ) from None


class OpenAICompatibleProvider(_HttpProvider):
    name = "openai"

    def send(self, system: str, prompt: str, max_tokens: int) -> Completion:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = self._post(
            "/chat/completions",
            {
                "model": self.model,
                "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            },
            headers,
        )
        try:
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
            return self._completion(
                text,
                data.get("model", self.model),
                int(usage.get("prompt_tokens", 0)),
                int(usage.get("completion_tokens", 0)),
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise LLMError(
                f"openai-compatible endpoint answered an unexpected shape: {exc}", raw=json.dumps(data)[:2000]
            ) from None


def retry_after_seconds(headers: Any) -> float:
    """How long a 429 / overloaded answer asks us to wait: OpenAI's `retry-after-ms`, else
    `Retry-After` in seconds or as an HTTP date; capped, with a default when it names none."""
    seconds: float | None = None
    try:
        if headers.get("retry-after-ms"):
            seconds = float(headers["retry-after-ms"]) / 1000
        elif headers.get("retry-after"):
            value = headers["retry-after"].strip()
            try:
                seconds = float(value)
            except ValueError:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        seconds = None
    if seconds is None or math.isnan(seconds):
        return DEFAULT_BACKOFF_SECONDS
    return min(MAX_BACKOFF_SECONDS, max(0.0, seconds))


def transport_from_settings(settings: Settings) -> Transport | None:
    """The configured wire format, or None for the deterministic analysers (LLM_PROVIDER=none)."""
    if settings.llm_provider == "none":
        return None
    known: dict[str, tuple[type[AnthropicProvider | OpenAICompatibleProvider], str, str]] = {
        "anthropic": (AnthropicProvider, ANTHROPIC_DEFAULT_URL, ANTHROPIC_DEFAULT_MODEL),
        "openai": (OpenAICompatibleProvider, "", OPENAI_DEFAULT_MODEL),
    }
    cls, default_url, default_model = known[settings.llm_provider]
    return cls(
        base_url=settings.llm_base_url or default_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model or default_model,
        timeout_seconds=settings.llm_timeout_seconds,
        cost_input_per_mtok=settings.llm_cost_input_per_mtok,
        cost_output_per_mtok=settings.llm_cost_output_per_mtok,
    )


_FENCED = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON a model was asked for: a fenced block, the whole text, or its first object.

    Raises MalformedOutput (keeping the raw text) when none of them parses.
    """
    candidates = [match.strip() for match in _FENCED.findall(text)]
    candidates.append(text.strip())
    candidates.extend(_balanced_objects(text))
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise MalformedOutput("model output holds no parseable JSON", raw=text[:4000])


def _balanced_objects(text: str) -> list[str]:
    """Top-level {...} / [...] spans, honouring strings and nesting."""
    spans, depth, start, in_string, escaped = [], 0, -1, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"' and depth > 0:
            in_string = True
        elif char in "{[":
            if depth == 0:
                start = index
            depth += 1
        elif char in "}]" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
    return spans
