"""Sentence splitting for Chinese text: CJK punctuation, full-width forms, numbers, and
English abbreviations embedded in Chinese (speech/sentences.py)."""

from __future__ import annotations

import pytest

from voice_call.speech.sentences import SentenceChunker, pack_sentences, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("您好。請問有什麼事？我想預約！", ["您好。", "請問有什麼事？", "我想預約！"]),
        ("第一點；第二點。", ["第一點；", "第二點。"]),
        ("嗯……我想想。好的。", ["嗯……", "我想想。", "好的。"]),
        ("他說：「好！」然後走了。", ["他說：「好！」", "然後走了。"]),
        # ASCII marks typed between Chinese words, no space after them
        ("真的嗎?你確定!那好;我們走.", ["真的嗎?", "你確定!", "那好;", "我們走."]),
        # the full-width full stop and the half-width ideographic one
        ("好的．再見｡謝謝", ["好的．", "再見｡", "謝謝"]),
    ],
)
def test_cjk_punctuation_ends_sentences_without_spaces(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "價格是3.5元，數量是1,000個。",
        "請找Dr. Wang醫師看診。",
        "他在U.S. 住了三年。",
        "他在U.S.住了三年。",
        "會議在下午3 p.m. 開始。",
        "例如e.g. 蘋果。",
    ],
)
def test_numbers_and_embedded_abbreviations_stay_whole(text: str) -> None:
    assert split_sentences(text) == [text]


def test_a_streamed_number_is_not_cut_at_its_decimal_point() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("總共是3") == []
    assert chunker.feed(".") == []
    assert chunker.feed("5公斤。還") == ["總共是3.5公斤。"]
    assert chunker.flush() == "還"


def test_streamed_chinese_is_released_at_each_full_stop() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("好的") == []
    assert chunker.feed("，我幫您查") == []
    assert chunker.feed("一下。請稍") == ["好的，我幫您查一下。"]
    assert chunker.feed("等；") == ["請稍等；"]


def test_a_long_chinese_run_on_is_cut_at_a_full_width_comma() -> None:
    text = "我們" * 40 + "，" + "然後" * 40
    pieces = split_sentences(text, max_chars=100)
    assert pieces[0].endswith("，")
    assert all(len(p) <= 100 for p in pieces)
    assert "".join(pieces) == text


def test_pack_joins_chinese_sentences_without_a_space() -> None:
    assert pack_sentences("您好。請問有什麼事？", 100) == ["您好。請問有什麼事？"]


def test_traditional_characters_pass_through_unchanged() -> None:
    text = "這裡是臺灣，請說國語。謝謝！"
    assert "".join(split_sentences(text)) == text
