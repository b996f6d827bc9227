"""The deterministic consolidation rules on realistic attribute sets, and the model-output parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from focus_app.services.attributes.consolidation import (
    Attribute,
    consolidate,
    llm_prompt,
    normalise_key,
    plan_from_model,
)
from focus_app.services.jobkit.llm import MalformedOutput, extract_json

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def attr(category, key, value, days=0, confidence=0.7):
    return Attribute(
        category, key, value, confidence, "user", T0 + timedelta(days=days), f"{category}.{key}.{days}"
    )


def after_of(plan) -> set[tuple[str, str, str]]:
    return {(a.category, a.key, a.value) for a in plan.after}


CASES = {
    "duplicates in other wording and key spelling": (
        [
            attr("preference", "favouriteColour", "blue", 1),
            attr("preference", "Favorite Color", "Blue.", 2),
            attr("interest", "hobby", "hiking", 1),
            attr("interest", "likes_hiking", "likes hiking", 0),
        ],
        {("preference", "favorite_color", "Blue"), ("interest", "hobby", "hiking")},
    ),
    "contradictions: most recent wins": (
        [attr("fact", "location", "Ohio", 0), attr("fact", "home_location", "Berlin", 5)],
        {("fact", "home_location", "Berlin")},
    ),
    "contradictions of the same age: most specific, then most confident": (
        [
            attr("fact", "city", "Ohio", 1),
            attr("fact", "home_location", "lives in Columbus, Ohio", 1),
            attr("preference", "drink", "tea", 2, confidence=0.4),
            attr("preference", "Drink", "mate", 2, confidence=0.8),
        ],
        {("fact", "home_location", "lives in Columbus, Ohio"), ("preference", "drink", "mate")},
    ),
    "noise: temporary states, greetings, one-off actions": (
        [
            attr("misc", "mood", "grumpy", 3),
            attr("health", "energy", "tired today", 3),
            attr("misc", "greeting", "good morning", 3),
            attr("communication", "opener", "Hi there!", 3),
            attr("misc", "last_action", "asked about the weather", 3),
            attr("misc", "note", "mentioned a dentist appointment yesterday", 3),
            attr("fact", "occupation", "just started as a nurse", 3),
            attr("health", "allergy", "allergic to peanuts", 1),
        ],
        {("fact", "occupation", "just started as a nurse"), ("health", "allergy", "allergic to peanuts")},
    ),
    "mixed categories: facts pinned, misc folded into the proper category": (
        [
            attr("misc", "full name", "Sam Rivera", 0),
            attr("fact", "name", "Sam Rivera", 1),
            attr("misc", "Job", "teacher", 0),
            attr("communication", "tone", "prefers short answers", 1),
            attr("misc", "tone", "Prefers short answers", 0),
            attr("preference", "morning_person", "yes", 1),
            attr("preference", "likes_coffee", "yes", 1),
        ],
        {
            ("fact", "name", "Sam Rivera"),
            ("fact", "occupation", "teacher"),
            ("communication", "tone", "prefers short answers"),
            ("preference", "morning_person", "yes"),
            ("preference", "likes_coffee", "yes"),
        },
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_rules_on_realistic_sets(case):
    before, expected = CASES[case]
    plan = consolidate(before)
    assert after_of(plan) == expected
    assert all(a.source == "maintenance" and a.confidence == 0.9 for a in plan.after)
    explained = {(d["attribute"]["category"], d["attribute"]["key"]) for d in plan.as_dict()["dropped"]}
    explained |= {(d["attribute"]["category"], d["attribute"]["key"]) for d in plan.as_dict()["merged"]}
    explained |= {(d["attribute"]["category"], d["attribute"]["key"]) for d in plan.as_dict()["renamed"]}
    gone = {(a.category, a.key) for a in before} - {(a.category, a.key) for a in plan.after}
    assert gone <= explained, "every attribute that disappears is explained"
    assert all(d["reason"] for d in plan.as_dict()["dropped"] + plan.as_dict()["merged"])


@pytest.mark.parametrize("case", CASES)
def test_consolidating_twice_changes_nothing(case):
    first = consolidate(CASES[case][0])
    second = consolidate(first.after)
    assert not second.changed
    assert second.decisions == []


def test_noise_is_explained_with_its_reason():
    plan = consolidate([attr("misc", "mood", "grumpy"), attr("misc", "greeting", "hello")]).as_dict()
    assert {d["attribute"]["key"]: d["reason"] for d in plan["dropped"]} == {
        "mood": "temporary state",
        "greeting": "greeting",
    }
    assert plan["after"] == [] and plan["changed"]


def test_recency_of_the_kept_value_is_the_latest_statement():
    plan = consolidate([attr("interest", "hobby", "chess", 1), attr("interest", "Hobby", "Chess", 4)])
    assert [(a.value, a.updated_at) for a in plan.after] == [("Chess", T0 + timedelta(days=4))]


@pytest.mark.parametrize(
    "raw, key",
    [("Home Location", "home_location"), ("homeLocation", "home_location"), ("fav-colour", "favorite_color")],
)
def test_key_normalisation(raw, key):
    assert normalise_key(raw) == key
    assert normalise_key(key) == key


BEFORE = [attr("fact", "location", "Ohio"), attr("misc", "mood", "tired")]


@pytest.mark.parametrize(
    "answer",
    [
        'Here you go:\n```json\n{"fact": {"home_location": "lives in Ohio"}}\n```',
        '{"fact": {"home_location": "lives in Ohio"}}',
        'Sure! {"fact": {"home_location": "lives in Ohio"}, "misc": {}} Hope that helps.',
    ],
)
def test_model_output_fenced_raw_and_embedded(answer):
    plan = plan_from_model(BEFORE, extract_json(answer), "llm:test")
    assert after_of(plan) == {("fact", "home_location", "lives in Ohio")}
    assert {d.attribute["key"]: d.action for d in plan.decisions} == {
        "location": "renamed",
        "mood": "removed",
    }


@pytest.mark.parametrize(
    "answer",
    [
        "I cannot help with that.",
        '["fact", "home_location"]',
        '{"fact": ["lives in Ohio"]}',
        '{"fact": {"home_location": {"city": "Ohio"}}}',
        "{}",
    ],
)
def test_malformed_model_output_is_refused(answer):
    with pytest.raises(MalformedOutput):
        plan_from_model(BEFORE, extract_json(answer), "llm:test")


def test_prompt_is_the_seeds_with_every_attribute():
    prompt = llm_prompt(BEFORE)
    assert (
        "MERGE duplicates" in prompt and "fact: location = Ohio" in prompt and "misc: mood = tired" in prompt
    )
