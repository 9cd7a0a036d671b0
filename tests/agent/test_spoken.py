"""The spoken-output contract (agent/spoken.py): what of a reply is read aloud, whole or streamed.

Property tests hold both readers to the same rules over generated replies and every way a
stream may cut them.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_call.agent.spoken import CONTRACT, SpokenStream, collapse, extract_spoken, is_lead_in

# Words to say: anything with something speakable in it.
words = st.text(min_size=1, max_size=80).filter(lambda s: bool(s.strip()))
# Plain text: no JSON, quotes, fences or tags; a first line that plans is the lead-in case.
PLAIN = st.characters(
    blacklist_characters='{}"`<\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029',
    blacklist_categories=("Cs",),
)
plain = st.text(PLAIN, min_size=1, max_size=120).filter(
    lambda s: bool(s.strip()) and not is_lead_in(next(ln for ln in s.split("\n") if ln.strip()))
)
LEAD_INS = [
    "Thinking...",
    "Thinking…",
    "Thinking:",
    "Let me think about this.",
    "The user is asking about opening hours.",
    "The caller wants to know the time, I should answer briefly.",
    "Okay, so the user wants a table.",
    "I should respond with the hours.",
    "Reasoning: they asked twice.",
    "<think>the user wants hours</think>",
]


def streamed(text: str, cuts: list[int]) -> str:
    """`text` through a SpokenStream, fed in pieces cut at `cuts`."""
    stream, out, last = SpokenStream(), [], 0
    for cut in [*sorted({c % (len(text) + 1) for c in cuts}), len(text)]:
        out.append(stream.feed(text[last:cut]))
        last = cut
    out.append(stream.finish())
    return "".join(out)


cuts = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


def wrapped(spoken: str, form: str) -> str:
    obj = json.dumps({"spoken": spoken}, ensure_ascii=form.endswith("ascii"))
    return {
        "plain": obj,
        "ascii": obj,
        "pretty": json.dumps({"spoken": spoken}, indent=2),
        "fenced": f"```json\n{obj}\n```",
        "fenced-ascii": f"```\n{obj}\n```",
        "embedded": f"Here is my answer: {obj} Hope that helps.",
        "reasoned": f"<think>The user wants something.</think>\n{obj}",
        "planned": f"The user is asking something.\n{obj}",
        "two-keys": json.dumps({"mood": "calm", "spoken": spoken}),
    }[form]


FORMS = ["plain", "ascii", "pretty", "fenced", "fenced-ascii", "embedded", "reasoned", "planned"]


# --- a whole reply -------------------------------------------------------------------------


@given(spoken=words, form=st.sampled_from([*FORMS, "two-keys"]))
def test_a_spoken_object_is_said_as_its_text_in_every_wrapping(spoken: str, form: str) -> None:
    said = extract_spoken(wrapped(spoken, form))
    assert said == collapse(spoken)
    assert said  # never empty when there is something to say
    if "{" not in spoken and "}" not in spoken:
        assert "{" not in said and "}" not in said
    assert '"spoken"' not in said or '"spoken"' in spoken


@given(spoken=words)
def test_an_inline_spoken_field_is_said_as_its_text(spoken: str) -> None:
    reply = "spoken output follows " + json.dumps({"spoken": spoken})[1:-1]  # no braces
    assert extract_spoken(reply) == collapse(spoken)


@given(text=plain)
def test_plain_text_is_said_whole_and_never_empty(text: str) -> None:
    said = extract_spoken(text)
    assert said == collapse(text)
    assert said and said == said.strip() and "  " not in said


@given(lead_in=st.sampled_from(LEAD_INS), answer=plain)
def test_a_planning_lead_in_is_never_read_aloud(lead_in: str, answer: str) -> None:
    assert extract_spoken(f"{lead_in}\n{answer}") == collapse(answer)
    assert extract_spoken(f"{lead_in}\n\n{answer}") == collapse(answer)


@pytest.mark.parametrize("lead_in", LEAD_INS)
def test_a_reply_that_only_plans_says_nothing(lead_in: str) -> None:
    assert extract_spoken(lead_in) == ""


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        ('{"reply": "We open at nine."}', "We open at nine."),  # another text field
        ('{"mood": "calm"}', ""),  # JSON with nothing to say is never read out
        ('{"spoken": ""}', ""),
        ("```\nWe open at nine.\n```", "We open at nine."),  # fence markers are not read
        ("Sure. The shop opens at nine.", "Sure. The shop opens at nine."),
        ("I can help with that.", "I can help with that."),
        ("Thinking about it, yes we are open.", "Thinking about it, yes we are open."),
        ("Let me check that for you.", "Let me check that for you."),
        ("I need to ask you a few questions.", "I need to ask you a few questions."),
        ("The caller ID shows your number.", "The caller ID shows your number."),
        ("We will answer within a day.", "We will answer within a day."),
    ],
)
def test_replies(reply: str, said: str) -> None:
    assert extract_spoken(reply) == said
    assert collapse(streamed(reply, [])) == said
    assert collapse(streamed(reply, list(range(len(reply))))) == said  # one char at a time


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        # the braces inside the inline field's value are not an object without `spoken`
        ('spoken output follows "spoken": "{}"', "{}"),
        ('Answer: "spoken": "Use {name} here."', "Use {name} here."),
        ('{"data": {"spoken": "We open at nine."}}', "We open at nine."),  # nested
        ('{"mood": "calm", "data": {"tone": "warm"}}', ""),
    ],
)
def test_an_object_without_a_text_field_does_not_hide_an_inline_one(reply: str, said: str) -> None:
    assert extract_spoken(reply) == said


def test_the_contract_asks_for_the_spoken_object() -> None:
    assert '{"spoken": ' in CONTRACT


# --- a streamed reply ----------------------------------------------------------------------


@given(spoken=words, form=st.sampled_from(FORMS), at=cuts)
def test_a_streamed_spoken_object_is_said_as_its_text(
    spoken: str, form: str, at: list[int]
) -> None:
    reply = wrapped(spoken, form)
    said = collapse(streamed(reply, at))
    if form == "embedded":  # words before the JSON went out before it could be seen
        assert said == collapse("Here is my answer: " + spoken)
    else:
        assert said == collapse(spoken)
    if "{" not in spoken:
        assert "{" not in said


@given(text=plain, at=cuts)
def test_streamed_plain_text_is_said_as_a_whole_reply_would_be(text: str, at: list[int]) -> None:
    assert collapse(streamed(text, at)) == extract_spoken(text)


@given(lead_in=st.sampled_from(LEAD_INS), answer=plain, at=cuts)
def test_a_streamed_planning_lead_in_is_never_read_aloud(
    lead_in: str, answer: str, at: list[int]
) -> None:
    assert collapse(streamed(f"{lead_in}\n{answer}", at)) == collapse(answer)


def test_the_spoken_string_streams_as_it_arrives() -> None:
    """Each piece of the string is passed on when it arrives, not when the JSON is complete."""
    stream = SpokenStream()
    assert stream.feed('{"spoken": "') == ""
    assert stream.feed("Sure. It") == "Sure. It"
    assert stream.feed(" is \\u00e9") == " is é"
    assert stream.feed("\\ud83d") == ""  # half a surrogate pair waits for the other half
    assert stream.feed('\\ude00 three."') == "😀 three."
    assert stream.feed("}") == ""
    assert stream.finish() == ""
