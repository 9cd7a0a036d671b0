"""The one interface every text-to-speech engine offers: text in, raw audio chunks out.

Chunks are yielded as the service streams them, so playback can start on the first one. They
are headerless 16-bit little-endian mono PCM at `rate` (or, when a service can give it, µ-law
at 8 kHz — what the phone line plays — which then needs no resampling at all).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal, Protocol

Encoding = Literal["pcm16", "ulaw"]


@dataclass(frozen=True)
class TtsAudio:
    data: bytes
    rate: int
    encoding: Encoding = "pcm16"


@dataclass(frozen=True)
class ReplyPart:
    """Which reply a sentence belongs to, and whether it is the reply's last: lets an engine
    that carries prosody across sentences (Cartesia's contexts) speak them as one utterance.

    Playback sets it (`REPLY_PART`) around each sentence it asks for; a context variable rather
    than an argument, so `synthesize(text)` — every engine, the fallback chain — stays as it
    is and engines without continuations never see it. Unset: the text stands alone."""

    reply_id: str
    last: bool


REPLY_PART: ContextVar[ReplyPart | None] = ContextVar("tts_reply_part", default=None)


class TtsError(RuntimeError):
    """Synthesis failed (the service refused, timed out, or sent something unusable)."""


class TtsUnavailable(RuntimeError):
    """The configured engine cannot be built (no key, espeak-ng not installed, bad settings)."""


class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        """Audio for `text`, chunk by chunk; raises TtsError on failure."""
        ...

    async def warm(self) -> None:
        """Open the connection ahead of the first request (while the phone rings)."""
        ...

    async def close(self) -> None: ...
