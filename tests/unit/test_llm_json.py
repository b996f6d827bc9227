import pytest

from focus_app.services.jobkit.llm import MalformedOutput, extract_json


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": {"b": [1, 2]}}\n```\nDone.', {"a": {"b": [1, 2]}}),
        ('```\n[{"k": "v"}]\n```', [{"k": "v"}]),
        (
            'Sure! {"quote": "a } inside", "n": {"m": 2}} hope this helps',
            {"quote": "a } inside", "n": {"m": 2}},
        ),
    ],
)
def test_json_is_found_wherever_the_model_put_it(text, expected):
    assert extract_json(text) == expected


def test_unparseable_output_raises_with_the_raw_text_kept():
    with pytest.raises(MalformedOutput) as error:
        extract_json("I cannot help with {that")
    assert error.value.raw == "I cannot help with {that"
