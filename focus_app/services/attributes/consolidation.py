"""Profile consolidation rules (seed 003): pure functions from attributes to an explained plan.

The deterministic consolidator is the default; the LLM path (seed 003's prompt) produces the same
kind of plan from a model's answer. Either plan is a fixed point: consolidating its result again
yields no change, so a second run in a row writes nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from focus_app.models.attributes import CATEGORIES
from focus_app.services.jobkit.llm import MalformedOutput

MAINTENANCE_SOURCE = "maintenance"
MAINTENANCE_CONFIDENCE = 0.9
MAX_KEY_LENGTH = 100

# Same meaning, different key: the alias maps onto the canonical key (never itself an alias).
KEY_ALIASES = {
    "location": "home_location",
    "lives_in": "home_location",
    "city": "home_location",
    "home": "home_location",
    "home_city": "home_location",
    "residence": "home_location",
    "job": "occupation",
    "work": "occupation",
    "profession": "occupation",
    "job_title": "occupation",
    "full_name": "name",
    "user_name": "name",
    "date_of_birth": "birthday",
    "dob": "birthday",
    "email_address": "email",
    "time_zone": "timezone",
    "tz": "timezone",
}
# Key spelling variants, token by token.
TOKEN_SPELLINGS = {"favourite": "favorite", "fav": "favorite", "fave": "favorite", "colour": "color"}
# Facts that belong in one category wherever they were filed.
PINNED_CATEGORY = {key: "fact" for key in ("name", "home_location", "occupation", "birthday", "email")}
# Never removed as a temporary state or one-off action, whatever their wording.
IMPORTANT_KEYS = frozenset(PINNED_CATEGORY) | {"timezone", "employer", "age", "pronouns", "preferred_name"}

TEMPORARY_KEYS = frozenset(
    {"mood", "current_mood", "feeling", "feelings", "current_feeling", "current_activity", "current_state"}
    | {"state", "status", "right_now", "today", "tonight", "energy_level"}
)
ONE_OFF_KEYS = frozenset({"last_action", "last_message", "last_question", "last_request", "asked_about"})
GREETING_KEYS = frozenset({"greeting", "greetings", "salutation"})

NOISE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "greeting",
        re.compile(
            r"^(hi|hello|hey|yo|good (morning|afternoon|evening|night)|thanks|thank you|bye|goodbye|"
            r"see you)( there| again| everyone| all| friend| so much| later)?$",
            re.I,
        ),
    ),
    (
        "temporary state",
        re.compile(
            r"\b(right now|at the moment|today|tonight|this (morning|afternoon|evening|week)|for now)\b", re.I
        ),
    ),
    (
        "temporary state",
        re.compile(
            r"^((is|am|feels?|feeling|felt) )?(a bit |very |so )?"
            r"(tired|sleepy|hungry|thirsty|bored|busy|sick|exhausted|stressed|grumpy)$",
            re.I,
        ),
    ),
    (
        "one-off action",
        re.compile(r"^(just|asked|said|mentioned|requested|clicked|sent|wanted to know)\b", re.I),
    ),
    ("one-off action", re.compile(r"\b(yesterday|last night|earlier today|a minute ago|just now)\b", re.I)),
)
# Values too generic to prove two different keys mean the same thing.
GENERIC_SIGNATURES = frozenset({("yes",), ("no",), ("true",), ("false",), ("none",), ("unknown",)})
SIGNATURE_STOPWORDS = frozenset(
    {"the", "a", "an", "user", "is", "are", "am", "i", "my", "really", "very", "likes", "loves", "enjoys"}
    | {"prefers", "to", "of"}
)
_VALUE_PREFIX = re.compile(r"^(the user|user)\s+", re.I)


@dataclass(frozen=True)
class Attribute:
    category: str
    key: str
    value: str
    confidence: float
    source: str
    updated_at: datetime
    id: str | None = None

    def ref(self) -> dict[str, str]:
        return {"category": self.category, "key": self.key, "value": self.value}

    def content(self) -> tuple[str, str, str, float, str]:
        return (self.category, self.key, self.value, self.confidence, self.source)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.ref(),
            "confidence": self.confidence,
            "source": self.source,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Decision:
    """One explained step: renamed, merged (duplicate), resolved (contradiction lost) or removed."""

    action: str
    attribute: dict[str, str]
    reason: str
    into: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "attribute": self.attribute, "into": self.into, "reason": self.reason}


@dataclass
class Plan:
    consolidator: str
    before: list[Attribute]
    after: list[Attribute]
    decisions: list[Decision] = field(default_factory=list)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return sorted(a.content() for a in self.before) != sorted(a.content() for a in self.after)

    def counts(self) -> dict[str, int]:
        actions = [d.action for d in self.decisions]
        return {
            "before": len(self.before),
            "after": len(self.after),
            **{name: actions.count(name) for name in ("renamed", "merged", "resolved", "removed")},
        }

    def as_dict(self) -> dict[str, Any]:
        by_action = defaultdict(list)
        for decision in self.decisions:
            by_action[decision.action].append(decision.as_dict())
        return {
            "consolidator": self.consolidator,
            "changed": self.changed,
            "counts": self.counts(),
            "before": [a.as_dict() for a in self.before],
            "after": [a.as_dict() for a in self.after],
            "merged": by_action["merged"],
            "dropped": by_action["resolved"] + by_action["removed"],
            "renamed": by_action["renamed"],
            "error": self.error,
        }


def normalise_key(raw: str) -> str:
    """snake_case, US spelling, canonical name: `Home Location`, `homeLocation`, `city` -> home_location."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", raw.strip())
    tokens = [TOKEN_SPELLINGS.get(t, t) for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]
    key = "_".join(tokens)[:MAX_KEY_LENGTH].strip("_")
    return KEY_ALIASES.get(key, key)


def normalise_value(raw: str) -> str:
    """Concise: single spaces, no trailing punctuation, no "the user" preamble."""
    value = " ".join(raw.split()).rstrip(".!;, ")
    while _VALUE_PREFIX.match(value):
        value = _VALUE_PREFIX.sub("", value, count=1)
    return value


def signature(value: str) -> tuple[str, ...]:
    """What a value says, ignoring case, punctuation and filler words."""
    return tuple(t for t in re.findall(r"[a-z0-9]+", value.lower()) if t not in SIGNATURE_STOPWORDS)


def noise_reason(key: str, value: str) -> str | None:
    if not value or not key:
        return "empty key or value"
    if key in GREETING_KEYS:
        return "greeting"
    for reason, pattern in NOISE_RULES:
        if reason == "greeting" and pattern.match(value):
            return reason
    if key in IMPORTANT_KEYS:
        return None
    if key in TEMPORARY_KEYS:
        return "temporary state"
    if key in ONE_OFF_KEYS:
        return "one-off action"
    for reason, pattern in NOISE_RULES:
        if reason != "greeting" and pattern.search(value):
            return reason
    return None


def _rank(attr: Attribute) -> tuple:
    """Winner first: most recent, then most specific, then highest confidence (then stable order)."""
    return (
        -attr.updated_at.timestamp(),
        -len(signature(attr.value)),
        -len(attr.value),
        -attr.confidence,
        attr.id or "",
    )


def _why_lost(winner: Attribute, loser: Attribute) -> str:
    if winner.updated_at > loser.updated_at:
        return "contradicted by a more recent value"
    if len(signature(winner.value)) > len(signature(loser.value)) or len(winner.value) > len(loser.value):
        return "contradicted by a more specific value of the same age"
    if winner.confidence > loser.confidence:
        return "contradicted by a value of higher confidence"
    return "contradicted by an equally recent, specific and confident value (stable order)"


def consolidate(before: list[Attribute]) -> Plan:
    """The deterministic consolidator: normalise, remove noise, merge duplicates, resolve contradictions."""
    plan = Plan("deterministic", before, [])
    normalised: list[tuple[Attribute, Attribute]] = []  # (original, normalised)
    for attr in before:
        key, value = normalise_key(attr.key), normalise_value(attr.value)
        reason = noise_reason(key, value)
        if reason is not None:
            plan.decisions.append(Decision("removed", attr.ref(), reason))
            continue
        normalised.append(
            (attr, replace(attr, category=PINNED_CATEGORY.get(key, attr.category), key=key, value=value))
        )

    # A misc attribute whose key lives in a proper category is filed there.
    homes: dict[str, str] = {}
    for _, norm in sorted(normalised, key=lambda pair: _rank(pair[1])):
        if norm.category != "misc":
            homes.setdefault(norm.key, norm.category)  # the most recent proper category
    normalised = [
        (o, replace(n, category=homes[n.key]) if n.category == "misc" and n.key in homes else n)
        for o, n in normalised
    ]

    for original, norm in normalised:
        if (original.category, original.key, original.value) != (norm.category, norm.key, norm.value):
            plan.decisions.append(
                Decision("renamed", original.ref(), "normalised key, category or wording", norm.ref())
            )

    groups: dict[tuple[str, str], list[Attribute]] = defaultdict(list)
    for _, norm in normalised:
        groups[(norm.category, norm.key)].append(norm)
    survivors: list[tuple[Attribute, datetime]] = []
    for members in groups.values():
        members.sort(key=_rank)
        winner = members[0]
        for loser in members[1:]:
            if signature(loser.value) == signature(winner.value):
                plan.decisions.append(
                    Decision("merged", loser.ref(), "same meaning, different key or wording", winner.ref())
                )
            else:
                plan.decisions.append(
                    Decision("resolved", loser.ref(), _why_lost(winner, loser), winner.ref())
                )
        survivors.append((winner, max(m.updated_at for m in members)))

    # Different keys of one category saying the same thing are one attribute under the best key.
    by_value: dict[tuple[str, tuple[str, ...]], list[tuple[Attribute, datetime]]] = defaultdict(list)
    for winner, stated in survivors:
        sig = signature(winner.value)
        if not sig or sig in GENERIC_SIGNATURES:
            sig = ("key:" + winner.key,)  # alone in its group
        group_key = (winner.category, sig)
        by_value[group_key].append((winner, stated))
    for group in by_value.values():
        group.sort(
            key=lambda m: (
                m[0].key not in IMPORTANT_KEYS and m[0].key not in KEY_ALIASES.values(),
                _rank(m[0]),
                len(m[0].key),
                m[0].key,
            )
        )
        keeper = group[0][0]
        for duplicate, _ in group[1:]:
            plan.decisions.append(
                Decision("merged", duplicate.ref(), "same value under another key", keeper.ref())
            )
        plan.after.append(
            replace(
                keeper,
                confidence=MAINTENANCE_CONFIDENCE,
                source=MAINTENANCE_SOURCE,
                updated_at=max(stated for _, stated in group),
                id=None,
            )
        )
    plan.after.sort(key=lambda a: (a.category, a.key))
    return plan


CONSOLIDATION_PROMPT = """You are a data cleanup assistant. Given a list of user profile attributes, consolidate them by:

1. MERGE duplicates (same meaning, different wording)
2. RESOLVE contradictions (keep the most recent/specific)
3. REMOVE noise (temporary states, greetings, one-time actions)
4. KEEP important facts (name, location, occupation, preferences, interests)

Input attributes (category: key = value):
{attributes}

Output a JSON object with consolidated attributes per category:
{{
  "preference": {{"key": "value", ...}},
  "fact": {{"key": "value", ...}},
  "interest": {{"key": "value", ...}},
  "communication": {{"key": "value", ...}},
  "health": {{"key": "value", ...}},
  "misc": {{"key": "value", ...}}
}}

Rules:
- Use snake_case keys (e.g., "home_location" not "location")
- Values should be concise statements
- Omit empty categories
- Prefer specific over vague (e.g., "lives in Ohio" over "has a location")
"""  # noqa: E501 (the seed's prompt, verbatim)
LLM_SYSTEM = "You consolidate user profile attributes and answer with JSON only."


def llm_prompt(before: list[Attribute]) -> str:
    """Seed 003's prompt; attributes oldest first so "most recent" reads as "last"."""
    lines = [f"{a.category}: {a.key} = {a.value}" for a in sorted(before, key=lambda a: a.updated_at)]
    return CONSOLIDATION_PROMPT.format(attributes="\n".join(lines))


def plan_from_model(before: list[Attribute], data: Any, consolidator: str) -> Plan:
    """A plan from the model's JSON; MalformedOutput when its shape is not the one asked for."""
    if not isinstance(data, dict):
        raise MalformedOutput(f"expected a JSON object of categories, got {type(data).__name__}")
    by_key = {(a.category, normalise_key(a.key)): a for a in before}
    latest = max((a.updated_at for a in before), default=datetime.now(UTC))
    after: dict[tuple[str, str], Attribute] = {}
    for category, items in data.items():
        if not isinstance(items, dict):
            raise MalformedOutput(
                f"category {category!r} must map keys to values, got {type(items).__name__}"
            )
        category = category if category in CATEGORIES else "misc"
        for raw_key, raw_value in items.items():
            if isinstance(raw_value, dict | list) or raw_value is None:
                raise MalformedOutput(f"value of {category}.{raw_key} must be a string")
            key, value = normalise_key(str(raw_key)), normalise_value(str(raw_value))
            if not key or not value:
                continue
            source = by_key.get((category, key))
            stated = source.updated_at if source is not None else latest
            after[(category, key)] = Attribute(
                category, key, value, MAINTENANCE_CONFIDENCE, MAINTENANCE_SOURCE, stated
            )
    if before and not after:
        raise MalformedOutput("the model returned no attributes for a non-empty profile")
    plan = Plan(consolidator, before, sorted(after.values(), key=lambda a: (a.category, a.key)))
    kept = {(a.category, a.key) for a in plan.after}
    for attr in before:
        target = (attr.category, normalise_key(attr.key))
        if target in kept:
            if (attr.category, attr.key) != target or after[target].value != attr.value:
                plan.decisions.append(
                    Decision("renamed", attr.ref(), "rewritten by the model", after[target].ref())
                )
        else:
            plan.decisions.append(Decision("removed", attr.ref(), "left out by the model"))
    return plan
