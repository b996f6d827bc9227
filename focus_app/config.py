"""Settings from the environment (12-factor), validated once at start-up.

Every process (web, worker, beat, CLI) builds its settings here, so a bad value stops all of them
with the same single line naming the setting.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENVIRONMENTS = ("production", "development", "test")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
LLM_PROVIDERS = ("none", "anthropic", "openai")
WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "admin", "dev", "test"}
MIN_SECRET_LENGTH = 16
# Words a hand-made or default secret is built from; what is left without them must still be long.
COMMON_WORDS = (
    "password", "passwd", "secret", "changeme", "change", "admin", "letmein", "qwerty", "welcome",
    "default", "example", "sample", "test", "root", "guest", "flower", "celery", "focus", "token",
    "apikey", "prod", "user", "login", "pass",
)  # fmt: skip
MIN_SECRET_REST = 12
RANDOM_SECRET_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
MIN_SECRET_DISTINCT = 8
DEV_SECRETS_FILE = Path(".data") / "dev-secrets.json"
# Written by `focus-app run` in development while its embedded servers run (see running_dev_servers).
DEV_RUN_FILE = Path(".data") / "dev-run.json"
DEV_CORS_ORIGINS = "http://localhost:*,http://127.0.0.1:*"
ORIGIN = re.compile(r"^https?://[^/:\s*]+(:(\d{1,5}|\*))?$")


class ConfigError(Exception):
    """One invalid setting; its message is the single line shown at start-up."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"invalid setting {setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    jwt_secret: str
    admin_api_key: str
    environment: str = "production"
    broker_url: str = ""
    result_backend: str = ""
    jwt_algorithm: str = "HS256"
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    timezone: str = "UTC"
    profile_update_interval_seconds: int = 300
    profile_batch_size: int = 500
    profile_min_sessions: int = 3
    profile_cache_ttl_seconds: int = 3600
    update_flag_ttl_seconds: int = 86400
    # A pending run unit whose message is in no queue and with no live worker, at least this old
    # (its planner had time to publish it), is published again; the sweep runs this often.
    unit_republish_after_seconds: int = 30
    unit_sweep_interval_seconds: int = 30
    # A SIGTERMed worker's running tasks get this long to finish before they are handed back.
    worker_soft_shutdown_seconds: int = 10
    task_soft_time_limit_seconds: int = 240
    task_time_limit_seconds: int = 300
    broker_visibility_timeout_seconds: int = 3600
    # A message run this many times without being acknowledged (its worker died) is parked.
    task_max_deliveries: int = 5
    profile_maintenance_interval_minutes: int = 60
    profile_attributes_max_per_entity: int = 500
    max_request_bytes: int = 64 * 1024
    intelligence_batch_size: int = 500
    intelligence_catch_up_weeks: int = 4
    intelligence_retry_interval_seconds: int = 900
    intelligence_retry_delay_seconds: int = 7200
    intelligence_max_retries: int = 3
    intelligence_retry_below_rate: float = 0.8
    brief_cache_ttl_seconds: int = 7 * 24 * 3600
    log_level: str = "INFO"
    log_format: str = "json"
    # Every Redis client (cache, broker, result backend) of web and workers: a dead or blackholed
    # Redis fails a command within these, so a web request never waits on it for long.
    redis_connect_timeout_seconds: float = 0.5
    redis_socket_timeout_seconds: float = 0.5
    # After a failed publish the web and the workers skip publishing for this long (the work is in
    # PostgreSQL and the sweepers publish it): a burst of requests during an outage costs nothing.
    publish_pause_seconds: float = 5.0
    # LLM provider shared by the analysers: "none" (deterministic, default), "anthropic" or
    # "openai" (any OpenAI-compatible chat endpoint, local model servers included).
    llm_provider: str = "none"
    llm_api_key: str = ""
    llm_base_url: str = ""
    llm_model: str = ""
    llm_timeout_seconds: int = 30
    llm_cost_input_per_mtok: float = 0.0
    llm_cost_output_per_mtok: float = 0.0
    # Flow control shared by every worker (services/jobkit/llm_flow.py); None = unlimited.
    llm_tokens_per_minute: int | None = None
    llm_requests_per_minute: int | None = None
    llm_user_daily_tokens: int | None = None
    # The limits count over a sliding window this long; only tests shorten it (the limit then
    # holds per window), so a per-minute limit is exercised in seconds with the same code.
    llm_limit_window_seconds: int = 60
    # Analysis jobs (seed 002): trigger thresholds, rate limit, retries, sweeper, archive.
    analysis_chat_trigger_messages: int = 5
    analysis_min_messages: int = 10
    analysis_max_messages: int = 200
    analysis_stale_after_seconds: int = 3600
    analysis_rate_limit_seconds: int = 3600
    analysis_max_retries: int = 3
    analysis_retry_backoff_seconds: float = 10.0
    analysis_retry_backoff_max_seconds: float = 600.0
    analysis_stuck_after_seconds: int = 300
    analysis_republish_after_seconds: int = 120
    analysis_sweep_interval_seconds: int = 60
    analysis_archive_after_days: int = 7
    # Where the operator page links to Flower (its own address; the page never calls it).
    flower_url: str = "http://127.0.0.1:5555"
    # Flower's `user:password[,user:password]`, read by Flower itself; checked here like a secret.
    flower_basic_auth: str = ""
    # Browser origins allowed to call the API (CORS); `scheme://host:*` allows any port.
    cors_origins: tuple[str, ...] = ()
    generated_secrets: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Broker and result backend default to the one Redis URL; separate URLs may override.
        if not self.broker_url:
            object.__setattr__(self, "broker_url", self.redis_url)
        if not self.result_backend:
            object.__setattr__(self, "result_backend", self.redis_url)
        self._validate()

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def _validate(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ConfigError("FOCUS_ENV", f"must be one of {', '.join(ENVIRONMENTS)}")
        if not self.database_url.startswith(("postgresql://", "postgresql+psycopg2://")):
            raise ConfigError("DATABASE_URL", "must be a postgresql:// URL")
        for name, url in (
            ("REDIS_URL", self.redis_url),
            ("CELERY_BROKER_URL", self.broker_url),
            ("CELERY_RESULT_BACKEND", self.result_backend),
        ):
            if not url.startswith(("redis://", "rediss://", "unix://", "amqp://")):
                raise ConfigError(name, "must be a redis:// URL")
        if self.jwt_algorithm not in JWT_ALGORITHMS:
            raise ConfigError("JWT_ALGORITHM", f"must be one of {', '.join(JWT_ALGORITHMS)}")
        self._validate_secrets()
        for origin in self.cors_origins:
            if not ORIGIN.match(origin):
                raise ConfigError(
                    "CORS_ORIGINS",
                    f"{origin!r} is not an origin like https://app.example.org or http://localhost:*",
                )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError("FOCUS_TIMEZONE", f"unknown timezone {self.timezone!r}") from exc
        if self.log_format not in ("json", "text"):
            raise ConfigError("LOG_FORMAT", "must be json or text")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("LOG_LEVEL", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        self._validate_llm()
        if not 0 <= self.intelligence_retry_below_rate <= 1:
            raise ConfigError("INTELLIGENCE_RETRY_BELOW_RATE", "must be between 0 and 1")
        for name in ("REDIS_CONNECT_TIMEOUT_SECONDS", "REDIS_SOCKET_TIMEOUT_SECONDS"):
            if not getattr(self, name.lower()) > 0:
                raise ConfigError(name, "must be above 0")
        if self.task_soft_time_limit_seconds >= self.task_time_limit_seconds:
            raise ConfigError("TASK_SOFT_TIME_LIMIT_SECONDS", "must be below TASK_TIME_LIMIT_SECONDS")
        if self.broker_visibility_timeout_seconds <= self.task_time_limit_seconds:
            raise ConfigError(
                "BROKER_VISIBILITY_TIMEOUT_SECONDS",
                "must be above TASK_TIME_LIMIT_SECONDS, or a running task is delivered twice",
            )

    def _validate_secrets(self) -> None:
        """Every environment: 16+ characters. Production also refuses what can be guessed: a
        repeated character or word, common words, a secret used twice, a default Flower login."""
        named = [("JWT_SECRET", self.jwt_secret, ""), ("ADMIN_API_KEY", self.admin_api_key, "")]
        for login in filter(None, self.flower_basic_auth.split(",")):
            user, colon, password = login.partition(":")
            if not (user and colon and password):
                raise ConfigError("FLOWER_BASIC_AUTH", "must be user:password (comma-separated for several)")
            named.append(("FLOWER_BASIC_AUTH", password, user))
        seen: dict[str, str] = {}
        for name, secret, user in named:
            problem = secret_problem(secret, strict=self.is_production)
            if problem:
                raise ConfigError(name, problem)
            if self.is_production and secret == user:
                raise ConfigError(name, "the password must not be the user name")
            if self.is_production and secret in seen:
                raise ConfigError(name, f"must differ from {seen[secret]}")
            seen.setdefault(secret, name)

    def _validate_llm(self) -> None:
        if self.llm_provider not in LLM_PROVIDERS:
            raise ConfigError("LLM_PROVIDER", f"must be one of {', '.join(LLM_PROVIDERS)}")
        if self.llm_provider == "anthropic" and not self.llm_api_key:
            raise ConfigError("LLM_API_KEY", "is required with LLM_PROVIDER=anthropic")
        if self.llm_provider == "openai" and not self.llm_base_url:
            raise ConfigError("LLM_BASE_URL", "is required with LLM_PROVIDER=openai")
        if self.llm_base_url and not self.llm_base_url.startswith(("http://", "https://")):
            raise ConfigError("LLM_BASE_URL", "must be an http(s):// URL")
        if not self.flower_url.startswith(("http://", "https://")):
            raise ConfigError("FLOWER_URL", "must be an http(s):// URL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        if env.get("FOCUS_ENV", "development") == "development" and not (
            env.get("DATABASE_URL") or env.get("REDIS_URL")
        ):
            env = {**env, **running_dev_servers()}
        environment = env.get("FOCUS_ENV", "production")
        secrets_found = {name: env.get(name, "") for name in ("JWT_SECRET", "ADMIN_API_KEY")}
        generated: tuple[str, ...] = ()
        if environment == "development":
            secrets_found, generated = _fill_dev_secrets(secrets_found)
        for name, value in secrets_found.items():
            if not value:
                raise ConfigError(name, "is required (set it in the environment)")
        for required in ("DATABASE_URL", "REDIS_URL"):
            if not env.get(required):
                raise ConfigError(required, "is required (set it in the environment)")

        values: dict[str, object] = {
            "environment": environment,
            "database_url": env["DATABASE_URL"],
            "redis_url": env["REDIS_URL"],
            "broker_url": env.get("CELERY_BROKER_URL", ""),
            "result_backend": env.get("CELERY_RESULT_BACKEND", ""),
            "jwt_secret": secrets_found["JWT_SECRET"],
            "admin_api_key": secrets_found["ADMIN_API_KEY"],
            "jwt_algorithm": env.get("JWT_ALGORITHM", "HS256"),
            "jwt_audience": env.get("JWT_AUDIENCE") or None,
            "jwt_issuer": env.get("JWT_ISSUER") or None,
            "timezone": env.get("FOCUS_TIMEZONE", "UTC"),
            "log_level": env.get("LOG_LEVEL", "INFO").upper(),
            "log_format": env.get("LOG_FORMAT", "text" if environment == "development" else "json"),
            "llm_provider": env.get("LLM_PROVIDER", "none"),
            "llm_api_key": env.get("LLM_API_KEY", ""),
            "llm_base_url": env.get("LLM_BASE_URL", ""),
            "llm_model": env.get("LLM_MODEL", ""),
            "flower_url": env.get("FLOWER_URL") or f"http://127.0.0.1:{env.get('FLOWER_PORT', '5555')}",
            "flower_basic_auth": env.get("FLOWER_BASIC_AUTH", ""),
            "cors_origins": tuple(
                origin.strip().rstrip("/")
                for origin in env.get(
                    "CORS_ORIGINS", DEV_CORS_ORIGINS if environment == "development" else ""
                ).split(",")
                if origin.strip()
            ),
            "generated_secrets": generated,
        }
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            if f.type == "int":
                values[f.name] = _positive_int(f.name.upper(), raw)
            elif f.type == "int | None":
                # Empty means unset (unlimited), so `LLM_TOKENS_PER_MINUTE=` in a .env file is allowed.
                values[f.name] = _positive_int(f.name.upper(), raw) if raw.strip() else None
            elif f.type == "float":
                values[f.name] = _non_negative_float(f.name.upper(), raw)
        return cls(**values)  # type: ignore[arg-type]


def secret_problem(secret: str, *, strict: bool) -> str | None:
    """Why `secret` is too weak (None when it is not); `strict` adds the rules of production."""
    if len(secret) < MIN_SECRET_LENGTH or secret.lower() in WEAK_SECRETS:
        return f"must be a random value of at least {MIN_SECRET_LENGTH} characters"
    if not strict:
        return None
    if len(set(secret)) < MIN_SECRET_DISTINCT or re.fullmatch(r"(.+?)\1+", secret, re.DOTALL):
        return f"repeats itself: use a random value ({RANDOM_SECRET_HINT})"
    rest = secret.lower()
    for word in COMMON_WORDS:
        rest = rest.replace(word, "")
    if len(rest) < MIN_SECRET_REST:
        return f"is made of common words or a default value: use a random value ({RANDOM_SECRET_HINT})"
    return None


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be positive, got {value}")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number, got {raw!r}") from None
    if not value >= 0:
        raise ConfigError(name, f"must not be negative, got {raw}")
    return value


def running_dev_servers() -> dict[str, str]:
    """FOCUS_ENV, DATABASE_URL and REDIS_URL of the `focus-app run` (development) that runs from this
    checkout, so `celery -A workers call …` and `focus-app token` typed beside it find its embedded
    servers and secrets without variables; empty when none runs. Production sets DATABASE_URL
    (or FOCUS_ENV=production) and never reads this file."""
    try:
        state = json.loads(DEV_RUN_FILE.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no file, unreadable, or its `focus-app run` has stopped
    return {name: str(state[name]) for name in ("FOCUS_ENV", "DATABASE_URL", "REDIS_URL") if name in state}


def record_dev_servers(pid: int, database_url: str, redis_url: str) -> None:
    """Called by `focus-app run` in development once its servers are up (see running_dev_servers)."""
    DEV_RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
    state = {"pid": pid, "FOCUS_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    DEV_RUN_FILE.write_text(json.dumps(state, indent=2))
    DEV_RUN_FILE.chmod(0o600)


def _fill_dev_secrets(found: dict[str, str]) -> tuple[dict[str, str], tuple[str, ...]]:
    generated = []
    for name, value in found.items():
        if not value:
            found[name], was_generated = dev_secret(name)
            if was_generated:
                generated.append(name)
    return found, tuple(generated)


def dev_secret(name: str) -> tuple[str, bool]:
    """Development only: a generated secret kept in .data/, so every process and restart agrees."""
    stored: dict[str, str] = {}
    if DEV_SECRETS_FILE.exists():
        stored = json.loads(DEV_SECRETS_FILE.read_text())
    if name in stored:
        return stored[name], False
    stored[name] = secrets.token_urlsafe(32)
    DEV_SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEV_SECRETS_FILE.write_text(json.dumps(stored, indent=2))
    DEV_SECRETS_FILE.chmod(0o600)
    return stored[name], True
