"""Deepgram Aura text-to-speech: `POST /v1/speak`, the body streamed back as it is synthesised.

Asked for `encoding=mulaw&sample_rate=8000&container=none`: headerless µ-law at 8 kHz is what
the phone line plays, so the audio goes out untouched (no resampling, no WAV header to strip).
The REST endpoint rather than the `/v1/speak` WebSocket: our replies reach the engine a whole
sentence at a time, so one streamed request per sentence starts audio as early, lets the next
sentence synthesise while one plays, and a failed sentence fails alone (no shared socket to
re-open, no Flush/Clear bookkeeping between sentences).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from voice_call.audio.g711 import SAMPLE_RATE
from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.settings import option

DEFAULT_BASE_URL = "https://api.deepgram.com"
DEFAULT_MODEL = "aura-2-thalia-en"


class DeepgramTts:
    name = "deepgram"

    def __init__(self, options: Mapping[str, Any], *, timeout_s: float = 8.0) -> None:
        api_key = option(options, "deepgram", "apiKey", str)
        if not api_key:
            raise TtsUnavailable(
                "tts: Deepgram needs an API key — set deepgramApiKey (or DEEPGRAM_API_KEY), or"
                " tts.providers.deepgram.apiKey"
            )
        self.model = option(options, "deepgram", "model", str, DEFAULT_MODEL)
        base_url = option(options, "deepgram", "baseUrl", str, DEFAULT_BASE_URL)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Token {api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        )

    @property
    def params(self) -> dict[str, str | int]:
        return {
            "model": self.model,
            "encoding": "mulaw",
            "sample_rate": SAMPLE_RATE,
            "container": "none",
        }

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        body = {"text": text}
        try:
            async with self._http.stream(
                "POST", "/v1/speak", params=self.params, json=body
            ) as reply:
                if reply.status_code != 200:
                    detail = (await reply.aread())[:300].decode(errors="replace")
                    raise TtsError(f"Deepgram refused: HTTP {reply.status_code} {detail}")
                async for chunk in reply.aiter_bytes():
                    if chunk:
                        yield TtsAudio(chunk, SAMPLE_RATE, "ulaw")
        except httpx.HTTPError as exc:
            raise TtsError(f"Deepgram failed: {type(exc).__name__}: {exc}") from None

    async def warm(self) -> None:
        # Any request opens the pooled connection (TCP + TLS) that the first sentence reuses.
        with contextlib.suppress(httpx.HTTPError):
            await self._http.get("/v1/models")

    async def close(self) -> None:
        await self._http.aclose()
