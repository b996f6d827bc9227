import pytest

from focus_app.services.job_runs import beat_slot
from workers.arguments import InvalidTaskArguments, one_of, optional_uuid, user_id_list


@pytest.mark.parametrize("value", ["alice", [1], [""], ["x" * 129], None, {"a": 1}])
def test_user_id_lists_are_checked(value):
    with pytest.raises(InvalidTaskArguments, match="user_ids must be a list"):
        user_id_list(value)


def test_valid_arguments_pass_through():
    assert user_id_list(["a", "b"]) == ["a", "b"]
    assert str(optional_uuid("7b0c1c55-4a43-4f5e-9a0b-1c2d3e4f5a6b", "run_id")).startswith("7b0c")
    assert optional_uuid(None, "run_id") is None
    assert one_of("beat", "trigger", ("beat", "manual")) == "beat"


def test_beat_slots_are_stable_within_an_interval():
    assert beat_slot(300, now=600) == beat_slot(300, now=899) == "2"
    assert beat_slot(300, now=900) == "3"
