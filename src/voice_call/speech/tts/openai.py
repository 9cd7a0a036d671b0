"""OpenAI text-to-speech: `POST /v1/audio/speech` with `response_format: "pcm"`, streamed.

`pcm` is headerless 24 kHz 16-bit mono; the API's default is MP3, which a phone line cannot
play, so the format is always named. Plain httpx (already a dependency) rather than the SDK,
which would add a second of import time for one request shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.settings import option

RATE = 24000
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAITts:
    name = "openai"

    def __init__(self, options: Mapping[str, Any], *, timeout_s: float = 8.0) -> None:
        api_key = option(options, "openai", "apiKey", str)
        if not api_key:
            raise TtsUnavailable(
                "tts: OpenAI needs an API key — set openaiApiKey (or OPENAI_API_KEY), or"
                " tts.providers.openai.apiKey"
            )
        self.model = option(options, "openai", "model", str, "gpt-4o-mini-tts")
        self.voice = option(options, "openai", "voice", str, "alloy")
        self.speed = option(options, "openai", "speed", float)
        self.instructions = option(options, "openai", "instructions", str)
        base_url = option(options, "openai", "baseUrl", str, DEFAULT_BASE_URL)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        )

    def _body(self, text: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        }
        if self.speed is not None:
            body["speed"] = self.speed
        if self.instructions:
            body["instructions"] = self.instructions
        return body

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        try:
            async with self._http.stream("POST", "/audio/speech", json=self._body(text)) as reply:
                if reply.status_code != 200:
                    detail = (await reply.aread())[:300].decode(errors="replace")
                    raise TtsError(f"OpenAI speech refused: HTTP {reply.status_code} {detail}")
                async for chunk in reply.aiter_bytes():
                    if chunk:
                        yield TtsAudio(chunk, RATE)
        except httpx.HTTPError as exc:
            raise TtsError(f"OpenAI speech failed: {type(exc).__name__}: {exc}") from None

    async def warm(self) -> None:
        # Any request opens the pooled connection (TCP + TLS) that the first reply reuses.
        with contextlib.suppress(httpx.HTTPError):
            await self._http.get("/models")

    async def close(self) -> None:
        await self._http.aclose()
