"""Sentence chunking: early release, abbreviations and numbers, and properties over any text."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_call.speech.sentences import SentenceChunker, sentences


def chunk(text: str, pieces: list[str] | None = None) -> list[str]:
    chunker = SentenceChunker()
    out: list[str] = []
    for piece in pieces if pieces is not None else [text]:
        out += chunker.feed(piece)
    rest = chunker.flush()
    return out + ([rest] if rest else [])


def test_a_sentence_is_released_on_its_last_token() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Sure") == []
    assert chunker.feed(".") == ["Sure."]  # not waiting for the next token
    assert chunker.feed(" Is it") == []
    assert chunker.feed(" late?") == ["Is it late?"]
    assert chunker.flush() is None


def test_punctuation_after_an_early_release_is_not_spoken_alone() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Well.") == ["Well."]
    assert chunker.feed("..") == []  # the rest of the ellipsis
    assert chunker.feed(" Next one") == []
    assert chunker.flush() == "Next one"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dr. Smith is in. Come by.", ["Dr. Smith is in.", "Come by."]),
        ("It costs 3.50 dollars. Okay?", ["It costs 3.50 dollars.", "Okay?"]),
        ("Visit example.com today. Thanks!", ["Visit example.com today.", "Thanks!"]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ('He said "hi." Then left.', ['He said "hi."', "Then left."]),
        ("Well... maybe.", ["Well...", "maybe."]),
        ("Hi. ?!", ["Hi.", "?!"]),
        ("line one\nline two", ["line one", "line two"]),
        ("No. I can't.", ["No.", "I can't."]),
        ("你好。今天天氣很好！我們走吧？", ["你好。", "今天天氣很好！", "我們走吧？"]),
        ("他說：「好！」然後走了。", ["他說：「好！」", "然後走了。"]),
        ("  ", []),
    ],
)
def test_boundaries(text: str, expected: list[str]) -> None:
    assert chunk(text) == expected


def test_a_number_waits_for_the_next_character() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("It is 3") == []
    assert chunker.feed(".") == []  # "3." could still become "3.5"
    assert chunker.feed("5 now.") == ["It is 3.5 now."]
    chunker = SentenceChunker()
    chunker.feed("Call 911.")
    assert chunker.feed(" Now") == ["Call 911."]


def test_a_run_on_is_cut_at_a_clause_mark() -> None:
    text = "word " * 30 + "and then, " + "more " * 40
    out = chunk(text)
    assert len(out) >= 2 and all(len(s) <= 240 for s in out[:-1])
    assert out[0].endswith(",")


def test_max_chars_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        SentenceChunker(max_chars=5)


async def test_async_helper() -> None:
    async def tokens() -> AsyncIterator[str]:
        for token in ["Hi", " there", ".", " Bye"]:
            yield token

    assert [s async for s in sentences(tokens())] == ["Hi there.", "Bye"]


def words(text: str) -> str:
    """Letters and digits, in order: what a listener hears."""
    return re.sub(r"[\W_]+", "", text)


WORDS = st.sampled_from(
    ["Hi", "Dr.", "3.5", "e.g.", "yes!", "no?", "ok.", "J.", "well...", "a,", '"quote."', "\n"]
)
TEXT = st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=40).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.data())
def test_chunks_keep_every_word_in_order(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    out = chunk(text, pieces)
    assert all(s and s == s.strip() for s in out)
    assert words("".join(out)) == words(text)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_whole_text_chunks_end_at_a_boundary_except_the_last(text: str) -> None:
    out = chunk(text)
    for sentence in out[:-1]:
        assert len(sentence) <= 240
        complete = sentence[-1] in ".!?…。！？\"')]}»”’」』）】,;:" or len(sentence) >= 80
        assert complete or "\n" in text, sentence
