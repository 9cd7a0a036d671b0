"""A TTS fallback chain (`tts.fallback`): when an engine fails before any audio — it cannot be
reached, answers an HTTP error, or sends nothing within `tts.timeoutMs` — the next one says the
same sentence, and a warning names the engine that failed, the one tried next and the attempt.

Once an engine has sent audio, a failure is not handed on: the caller has heard part of the
sentence, and a second voice starting it again would be garbled double speech (the seed's rule
for its `<Say>` fallback too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence

from voice_call.speech.tts.base import TtsAudio, TtsEngine, TtsError

log = logging.getLogger("voice_call.speech")


class FallbackTts:
    name = "fallback"

    def __init__(self, engines: Sequence[TtsEngine], first_audio_s: float) -> None:
        self.engines = list(engines)
        self.first_audio_s = first_audio_s

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        names = " → ".join(engine.name for engine in self.engines)
        for attempt, engine in enumerate(self.engines, 1):
            chunks = engine.synthesize(text)
            async with contextlib.aclosing(chunks):
                try:
                    async with asyncio.timeout(self.first_audio_s):
                        first = await anext(chunks)
                except (TtsError, TimeoutError, StopAsyncIteration) as exc:
                    reason = _reason(exc, self.first_audio_s)
                    if attempt == len(self.engines):
                        raise TtsError(
                            f"every TTS engine failed ({names}); last: {reason}"
                        ) from None
                    following = self.engines[attempt]
                    log.warning(
                        'tts fallback: "%s" failed (%s) — trying "%s" (attempt %d of %d: %s)',
                        engine.name,
                        reason,
                        following.name,
                        attempt + 1,
                        len(self.engines),
                        names,
                    )
                    continue
                yield first
                async for chunk in chunks:
                    yield chunk
                return

    async def warm(self) -> None:
        await self.engines[0].warm()  # the others only speak when it fails

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()


def _reason(exc: BaseException, first_audio_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no audio within {first_audio_s:g} s"
    if isinstance(exc, StopAsyncIteration):
        return "no audio at all"
    return str(exc)
