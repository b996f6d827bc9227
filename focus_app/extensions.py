"""Accessors for the per-app resources, used by views and tasks (both run in an app context)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import redis
from flask import current_app
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from focus_app.config import Settings
from focus_app.services.jobkit.llm import LLMProvider
from focus_app.services.jobkit.llm_flow import Flow, Limits, provider_from_settings


def settings() -> Settings:
    return current_app.extensions["settings"]


def db_session() -> Session:
    return current_app.extensions["db"].session()


def db_statement() -> AbstractContextManager[Connection]:
    """An autocommit connection for a request that is one statement (see Database.statements)."""
    return current_app.extensions["db"].statement()


def redis_client() -> redis.Redis:
    return current_app.extensions["redis"]


def llm_provider(family: str) -> LLMProvider | None:
    """The configured model provider behind the shared flow control, its calls counted for one
    job family (`analysis`, `consolidation`, `brief`); None when LLM_PROVIDER is none."""
    config = settings()
    flow = Flow(redis_client(), current_app.extensions["db"].statements, Limits.from_settings(config))
    return provider_from_settings(config, flow, family)
