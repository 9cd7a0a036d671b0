"""Shared by tests/providers/<carrier>/test_mandarin.py: a call held in Traditional Chinese
(top-level `language: "zh-TW"`), the callee's lines, and the echo responder's replies."""

from __future__ import annotations

from typing import Any

from voice_call.models import CallRecord, Speaker

GREETING = "您好，這裡是臺北診所，來電確認您的預約。"
LINES = ("您好，我是陳小姐。", "星期二下午三點可以，謝謝。", "沒有了，再見！")
OVERRIDES: dict[str, Any] = {"language": "zh-TW", "responder": {"provider": "echo"}}


def said_by_caller(record: CallRecord) -> list[str]:
    return [e.text for e in record.transcript if e.speaker == Speaker.USER]


def echoes(count: int) -> list[str]:
    """What the echo responder answers to the first `count` lines: 「您說：…」."""
    return [f"您說：{line}" for line in LINES[:count]]
