"""The local analyser, the LLM output validation and the retry backoff, as pure functions."""

from __future__ import annotations

import json
import random

import pytest

from focus_app.services.analysis.analyser import (
    LocalAnalyser,
    build_prompt,
    parse_interpretation,
    sample_confidence,
)
from focus_app.services.analysis.jobs import Rules
from focus_app.services.analysis.run import backoff_seconds
from focus_app.services.jobkit.llm import MalformedOutput

MESSAGES = [
    "I work as a teacher and the marking load is heavy this term.",
    "Marking load again tonight, I am tired and stressed.",
    "My brother is getting married in June!",
    "The students were great today, I feel happy and proud.",
    "Not happy about the marking load, it never ends.",
    "Weekend off, calm and relaxed, went hiking with friends.",
]


def test_local_analysis_reads_the_messages():
    analysis = LocalAnalyser().analyse("work", MESSAGES)
    result = analysis.interpretation
    assert result["themes"][0] == {"theme": "load", "messages": 3}
    assert {"topic": "marking load", "messages": 3} in result["recurring_topics"]
    assert "My brother is getting married in June" in result["notable_facts"]
    assert any(fact.startswith("I work as a teacher") for fact in result["notable_facts"])
    assert result["sentiment"]["label"] == "mixed"
    assert result["sentiment"]["negative_messages"] == 2  # "not happy" counts as negative
    assert analysis.confidence == sample_confidence(6)
    assert LocalAnalyser().analyse("work", MESSAGES) == analysis


def test_confidence_grows_with_the_sample_and_saturates():
    values = [sample_confidence(n) for n in (10, 30, 100, 1000)]
    assert values == sorted(values) and values[-1] == 0.95 and 0.4 < values[0] < 0.6


def test_llm_output_is_validated_whole():
    good = {"summary": "s", "themes": [], "sentiment": {"label": "neutral"}, "confidence": 0.5}
    interpretation, confidence = parse_interpretation("```json\n" + json.dumps(good) + "\n```")
    assert confidence == 0.5 and interpretation["notable_facts"] == []
    for bad in (
        "no json at all",
        json.dumps([good]),
        json.dumps({**good, "confidence": 3}),
        json.dumps({**good, "sentiment": {"label": "ecstatic"}}),
        json.dumps({k: v for k, v in good.items() if k != "summary"}),
        json.dumps({**good, "themes": "work"}),
    ):
        with pytest.raises(MalformedOutput) as caught:
            parse_interpretation(bad)
        assert caught.value.raw == bad and caught.value.retryable


def test_prompt_keeps_the_newest_messages_when_too_long():
    prompt = build_prompt("work", ["old " * 7000, "newest message"])
    assert "newest message" in prompt and "old old" not in prompt


def test_backoff_is_exponential_jittered_and_capped():
    rules = Rules(backoff_seconds=10, backoff_max_seconds=60)
    rng = random.Random(1)
    for attempt, step in ((1, 10), (2, 20), (3, 40), (6, 60)):
        delays = [backoff_seconds(attempt, rules, rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays) and len(set(delays)) > 1
