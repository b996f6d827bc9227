import uuid
from datetime import UTC, datetime

import pytest

from focus_app.services.jobkit.runs import beat_slot
from workers.arguments import InvalidTaskArguments, checked, unit_of, user_id_list


@pytest.mark.parametrize("value", ["alice", None, {"a": 1}])
def test_user_id_lists_are_checked(value):
    with pytest.raises(InvalidTaskArguments, match="user_ids must be a list"):
        user_id_list(value)


@pytest.mark.parametrize("item", [1, "", "x" * 129, "   ", "a\nb", "a\x00b", "\ud800", " alice"])
def test_each_user_id_of_a_list_is_checked_by_the_token_rule(item):
    with pytest.raises(InvalidTaskArguments, match=r"user_ids\[1\] must"):
        user_id_list(["fine", item])


@pytest.mark.parametrize(
    "arguments,named",
    [
        ({"older_than_days": 10**12}, "older_than_days must be a whole number from 0 to 36500"),
        ({"unit_no": 2**40}, "unit_no must be a whole number from 0 to 2147483647"),
        ({"older_than_days": -1}, "older_than_days must be a whole number"),
    ],
)
def test_integers_out_of_range_are_named_before_they_overflow(arguments, named):
    with pytest.raises(InvalidTaskArguments, match=named):
        checked(arguments)


def test_valid_arguments_pass_through_converted():
    run_id = "7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b"
    assert checked({"user_ids": ["a", "b"], "run_id": run_id, "trigger": "beat", "unit_no": None}) == {
        "user_ids": ["a", "b"],
        "run_id": uuid.UUID(run_id),
        "trigger": "beat",
        "unit_no": None,
    }


def test_every_bad_argument_is_named():
    with pytest.raises(InvalidTaskArguments, match="trigger must be one of beat, manual, api"):
        checked({"trigger": "cron"})
    with pytest.raises(InvalidTaskArguments, match="week_of must be a Monday"):
        checked({"week_of": "2026-01-06"})


def test_run_id_and_unit_no_go_together():
    with pytest.raises(InvalidTaskArguments, match="run_id and unit_no go together"):
        unit_of(uuid.uuid4(), None)
    assert unit_of(None, None) is None
    assert unit_of(uuid.UUID(int=1), 0).unit_no == 0


def test_beat_slots_are_stable_within_an_interval():
    def at(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    assert beat_slot(300, at(600)) == beat_slot(300, at(899.9)) == "2"
    assert beat_slot(300, at(900)) == "3"


@pytest.mark.parametrize(
    "arguments,named",
    [
        ({"failed_since": "2026-01-05"}, "failed_since must be an ISO 8601 date and time with an offset"),
        ({"failed_until": "2026-01-05T10:00:00"}, "failed_until must be an ISO 8601 date and time"),
        ({"failed_since": "yesterday"}, "failed_since must be an ISO 8601"),
        ({"error": ""}, "error must be a text of 1 to 500 characters"),
        ({"error": "x" * 501}, "error must be a text of 1 to 500"),
        ({"error": "a\x00b"}, "error must be a text .* without NUL"),
        ({"error": "\ud800"}, "error must be a text .* lone surrogates"),
        ({"context_type": "Work Stuff"}, "context_type must be lower-case letters"),
    ],
)
def test_bulk_replay_filters_are_checked_by_name(arguments, named):
    with pytest.raises(InvalidTaskArguments, match=named):
        checked(arguments)


def test_a_moment_with_an_offset_is_handed_on_in_utc():
    found = checked(
        {"failed_since": "2026-01-05T10:00:00+05:45", "context_type": "work", "error": "HTTP 429"}
    )
    assert found["failed_since"] == datetime(2026, 1, 5, 4, 15, tzinfo=UTC)
    assert (found["context_type"], found["error"]) == ("work", "HTTP 429")
