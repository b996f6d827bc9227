"""Profile-interpretation analysers: one interface, a local deterministic one and an LLM one.

The local analyser (default, no network) reads the messages themselves: recurring themes and
phrases, lexicon sentiment with negation, first-person facts, and a confidence that grows with the
sample. The LLM analyser asks a provider for the same JSON shape and validates it whole, so a
malformed answer is a retryable error and never a half-stored interpretation.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from focus_app.services.jobkit.llm import Budget, LLMProvider, MalformedOutput, extract_json

MAX_THEMES = 5
MAX_FACTS = 5
MAX_PROMPT_CHARS = 24_000


@dataclass(frozen=True)
class Analysis:
    interpretation: dict[str, Any]
    confidence: float
    analyser: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class Analyser(Protocol):
    name: str

    def analyse(self, context_type: str, messages: list[str], *, budget: Budget | None = None) -> Analysis:
        """`budget`: whose daily model tokens pay (the local analyser spends none)."""
        ...


def analyser_for(provider: LLMProvider | None) -> Analyser:
    """The LLM analyser with a configured provider, else the local one."""
    return LocalAnalyser() if provider is None else LLMAnalyser(provider)


def sample_confidence(message_count: int) -> float:
    """Confidence from sample size alone: 10 messages ≈ 0.49, 30 ≈ 0.86, saturating at 0.95."""
    return round(min(0.95, 1 - math.exp(-message_count / 15)), 3)


# --- local analyser -------------------------------------------------------------------------

_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do does doesn't
    doing don't down during each few for from further get got had hadn't has hasn't have haven't having
    he her here hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its
    itself just let's like me more most much my myself no nor not now of off on once only or other
    ought our ours ourselves out over own really same she should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they're this those through
    to too under until up very was wasn't we we're were weren't what what's when where which while who
    whom why will with won't would wouldn't you you're your yours yourself yourselves im ive dont
    cant thing things something lot lots maybe still even well yeah ok okay one two go going gonna
    want wanted think thought feel felt know knew make made say said see saw way time day today""".split()
)
POSITIVE = frozenset(
    """good great happy glad love loved loving enjoy enjoyed enjoying excited exciting calm proud
    grateful thankful hopeful confident relaxed fun wonderful amazing awesome better best nice
    productive focused motivated progress success successful win won easy clear supportive kind
    peaceful content satisfied improving improved fantastic""".split()
)
NEGATIVE = frozenset(
    """bad sad angry upset anxious anxiety worried worry worrying stress stressed stressful tired
    exhausted lonely hate hated frustrated frustrating annoyed afraid scared fear hurt hurting pain
    difficult hard struggle struggling fail failed failing lost confused overwhelmed worse worst
    sick boring bored depressed disappointed jealous guilty procrastinate procrastinating
    distracted""".split()
)
NEGATIONS = frozenset("not no never don't doesn't didn't isn't wasn't can't cannot won't hardly".split())
_FACT = re.compile(
    r"\b(?:i am|i'm|i have|i've|i work|i live|i study|i studied|i like|i love|i hate|i prefer|"
    r"i want|i need|my [a-z]+ (?:is|are|was))\b[^.!?\n]{2,120}",
    re.IGNORECASE,
)


class LocalAnalyser:
    """Deterministic text analysis: the same messages always give the same interpretation."""

    name = "local"

    def analyse(self, context_type: str, messages: list[str], *, budget: Budget | None = None) -> Analysis:
        tokenised = [_WORD.findall(message.lower()) for message in messages]
        scores = [_sentiment(tokens) for tokens in tokenised]
        interpretation = {
            "summary": "",
            "themes": _themes(tokenised),
            "recurring_topics": _recurring_phrases(tokenised),
            "sentiment": _sentiment_summary(scores),
            "notable_facts": _facts(messages),
        }
        interpretation["summary"] = _summary(context_type, len(messages), interpretation)
        return Analysis(interpretation, sample_confidence(len(messages)), self.name)


def _content_words(tokens: list[str]) -> list[str]:
    return [t for t in tokens if len(t) > 2 and t not in STOPWORDS]


def _themes(tokenised: list[list[str]]) -> list[dict[str, Any]]:
    """Words the user comes back to: counted once per message, kept if in 2+ messages."""
    document_frequency: Counter[str] = Counter()
    for tokens in tokenised:
        document_frequency.update(set(_content_words(tokens)))
    ranked = sorted(
        ((word, n) for word, n in document_frequency.items() if n >= 2), key=lambda item: (-item[1], item[0])
    )
    return [{"theme": word, "messages": n} for word, n in ranked[:MAX_THEMES]]


def _recurring_phrases(tokenised: list[list[str]]) -> list[dict[str, Any]]:
    """Two-word phrases of content words that appear in at least two messages."""
    frequency: Counter[str] = Counter()
    for tokens in tokenised:
        words = _content_words(tokens)
        frequency.update({f"{a} {b}" for a, b in zip(words, words[1:], strict=False)})
    ranked = sorted(
        ((phrase, n) for phrase, n in frequency.items() if n >= 2), key=lambda item: (-item[1], item[0])
    )
    return [{"topic": phrase, "messages": n} for phrase, n in ranked[:MAX_THEMES]]


def _sentiment(tokens: list[str]) -> float:
    """Lexicon score in [-1, 1]; a negation within the two previous words flips a hit."""
    hits = 0.0
    count = 0
    for index, token in enumerate(tokens):
        polarity = 1 if token in POSITIVE else -1 if token in NEGATIVE else 0
        if not polarity:
            continue
        if any(word in NEGATIONS for word in tokens[max(0, index - 2) : index]):
            polarity = -polarity
        hits += polarity
        count += 1
    return hits / count if count else 0.0


def _sentiment_summary(scores: list[float]) -> dict[str, Any]:
    mean = sum(scores) / len(scores) if scores else 0.0
    positive = sum(1 for s in scores if s > 0)
    negative = sum(1 for s in scores if s < 0)
    if positive and negative and min(positive, negative) >= 0.3 * (positive + negative):
        label = "mixed"
    elif mean > 0.15:
        label = "positive"
    elif mean < -0.15:
        label = "negative"
    else:
        label = "neutral"
    half = len(scores) // 2
    trend = "steady"
    if half:
        early = sum(scores[:half]) / half
        late = sum(scores[half:]) / (len(scores) - half)
        if late - early > 0.2:
            trend = "improving"
        elif early - late > 0.2:
            trend = "declining"
    return {
        "label": label,
        "score": round(mean, 3),
        "positive_messages": positive,
        "negative_messages": negative,
        "trend": trend,
    }


def _facts(messages: list[str]) -> list[str]:
    """First-person statements (`I work as…`, `my sister is…`), newest first, deduplicated."""
    seen: set[str] = set()
    facts: list[str] = []
    for message in reversed(messages):
        for sentence in _SENTENCE.split(message):
            for match in _FACT.finditer(sentence):
                fact = match.group(0).strip().rstrip(",;:")
                key = fact.lower()
                if key not in seen:
                    seen.add(key)
                    facts.append(fact)
                if len(facts) == MAX_FACTS:
                    return facts
    return facts


def _summary(context_type: str, count: int, interpretation: dict[str, Any]) -> str:
    themes = [item["theme"] for item in interpretation["themes"][:3]]
    about = f"mostly about {', '.join(themes)}" if themes else "without a recurring theme yet"
    sentiment = interpretation["sentiment"]
    return f"{count} {context_type} messages, {about}; tone {sentiment['label']} ({sentiment['trend']})."


# --- LLM analyser ---------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You analyse a user's chat messages from one context of their life and describe the person "
    "carefully, without speculation beyond the text. Answer with one JSON object only, no prose."
)
PROMPT_TEMPLATE = """Context: {context_type}
Messages (oldest first, one per line):
{messages}

Answer with JSON of exactly this shape:
{{"summary": "2-3 sentences",
  "themes": [{{"theme": "word or short phrase", "messages": <how many messages mention it>}}],
  "recurring_topics": [{{"topic": "short phrase", "messages": <count>}}],
  "sentiment": {{"label": "positive|negative|neutral|mixed", "score": <-1..1>,
                "trend": "improving|declining|steady"}},
  "notable_facts": ["fact stated by the user", ...],
  "confidence": <0..1, how well the messages support this>}}"""
SENTIMENT_LABELS = ("positive", "negative", "neutral", "mixed")


@dataclass
class LLMAnalyser:
    provider: LLMProvider
    max_tokens: int = 1024
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"llm:{self.provider.name}"

    def analyse(self, context_type: str, messages: list[str], *, budget: Budget | None = None) -> Analysis:
        completion = self.provider.complete(
            SYSTEM_PROMPT, build_prompt(context_type, messages), max_tokens=self.max_tokens, budget=budget
        )
        try:
            interpretation, model_confidence = parse_interpretation(completion.text)
        except MalformedOutput as exc:
            exc.completion = completion
            raise
        # The model's own confidence, capped by what the sample size can support.
        confidence = round(min(model_confidence, sample_confidence(len(messages))), 3)
        return Analysis(
            interpretation,
            confidence,
            f"{self.name}:{completion.model}"[:100],
            completion.tokens_in,
            completion.tokens_out,
            completion.cost_usd,
        )


def build_prompt(context_type: str, messages: list[str]) -> str:
    """Newest messages win when the prompt would be too long."""
    lines: list[str] = []
    budget = MAX_PROMPT_CHARS
    for message in reversed(messages):
        line = "- " + " ".join(message.split())
        if len(line) > budget:
            break
        lines.append(line)
        budget -= len(line) + 1
    return PROMPT_TEMPLATE.format(context_type=context_type, messages="\n".join(reversed(lines)))


def parse_interpretation(text: str) -> tuple[dict[str, Any], float]:
    """Validate the model's JSON whole; anything off is MalformedOutput carrying the raw text."""
    data = extract_json(text)

    def bad(reason: str) -> MalformedOutput:
        return MalformedOutput(f"model output {reason}", raw=text[:4000])

    if not isinstance(data, dict):
        raise bad("is not a JSON object")
    missing = [key for key in ("summary", "themes", "sentiment", "confidence") if key not in data]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    if not isinstance(data["summary"], str):
        raise bad("has a non-string summary")
    sentiment = data["sentiment"]
    if not isinstance(sentiment, dict) or sentiment.get("label") not in SENTIMENT_LABELS:
        raise bad(f"has sentiment.label outside {', '.join(SENTIMENT_LABELS)}")
    confidence = data["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise bad("has a confidence outside 0..1")
    lists = {}
    for key in ("themes", "recurring_topics", "notable_facts"):
        value = data.get(key, [])
        if not isinstance(value, list):
            raise bad(f"has {key} that is not a list")
        lists[key] = value[:20]
    interpretation = {
        "summary": data["summary"][:2000],
        "themes": lists["themes"],
        "recurring_topics": lists["recurring_topics"],
        "sentiment": sentiment,
        "notable_facts": [str(fact)[:300] for fact in lists["notable_facts"]],
    }
    return interpretation, float(confidence)
