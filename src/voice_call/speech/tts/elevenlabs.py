"""ElevenLabs text-to-speech over its streaming endpoint, raw audio only.

`output_format` is always named in the query — `pcm_16000` by default, or `ulaw_8000` (already
what a phone line plays) or another `pcm_<rate>` — because the API otherwise answers MP3, and an
`Accept: audio/mpeg` header once turned an explicit PCM request into MP3 too (seed issue
#67340). So no audio Accept header is sent, and a reply that still says MP3 is an error rather
than noise on the line.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
from pydantic.alias_generators import to_snake

from voice_call.audio.resample import SUPPORTED_RATES
from voice_call.speech.tts.base import TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.settings import option

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_VOICE_ID = "21m00Tcm4TlvDq8ikWAM"


def parse_output_format(name: str) -> tuple[int, str]:
    """`ulaw_8000` / `pcm_<rate>` → (rate, encoding); anything else is refused."""
    if name == "ulaw_8000":
        return 8000, "ulaw"
    codec, _, rate = name.partition("_")
    if codec == "pcm" and rate.isdigit() and int(rate) in SUPPORTED_RATES:
        return int(rate), "pcm16"
    raise TtsUnavailable(
        f'tts.providers.elevenlabs.outputFormat "{name}" cannot go on a phone line — use'
        ' "ulaw_8000" or "pcm_16000" (also pcm_8000/22050/24000/44100/48000)'
    )


class ElevenLabsTts:
    name = "elevenlabs"

    def __init__(self, options: Mapping[str, Any], *, timeout_s: float = 8.0) -> None:
        api_key = option(options, "elevenlabs", "apiKey", str)
        if not api_key:
            raise TtsUnavailable(
                "tts: ElevenLabs needs an API key — set elevenlabsApiKey (or"
                " ELEVENLABS_API_KEY), or tts.providers.elevenlabs.apiKey"
            )
        self.voice_id = option(options, "elevenlabs", "voiceId", str, DEFAULT_VOICE_ID)
        self.model_id = option(options, "elevenlabs", "modelId", str, "eleven_flash_v2_5")
        self.output_format = option(options, "elevenlabs", "outputFormat", str, "pcm_16000")
        self.rate, self.encoding = parse_output_format(self.output_format)
        settings = options.get("voiceSettings")
        # the config spells them camelCase (similarityBoost); the API takes snake_case
        self.voice_settings = (
            {to_snake(key): value for key, value in settings.items()}
            if isinstance(settings, Mapping)
            else None
        )
        base_url = option(options, "elevenlabs", "baseUrl", str, DEFAULT_BASE_URL)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"xi-api-key": api_key},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        )

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        body: dict[str, Any] = {"text": text, "model_id": self.model_id}
        if isinstance(self.voice_settings, dict):
            body["voice_settings"] = self.voice_settings
        path = f"/v1/text-to-speech/{self.voice_id}/stream"
        params = {"output_format": self.output_format}
        try:
            async with self._http.stream("POST", path, params=params, json=body) as reply:
                if reply.status_code != 200:
                    detail = (await reply.aread())[:300].decode(errors="replace")
                    raise TtsError(f"ElevenLabs refused: HTTP {reply.status_code} {detail}")
                kind = reply.headers.get("content-type", "")
                if "mpeg" in kind or "mp3" in kind:
                    raise TtsError(
                        f"ElevenLabs sent {kind} although {self.output_format} was asked"
                    )
                async for chunk in reply.aiter_bytes():
                    if chunk:
                        yield TtsAudio(
                            chunk, self.rate, "ulaw" if self.encoding == "ulaw" else "pcm16"
                        )
        except httpx.HTTPError as exc:
            raise TtsError(f"ElevenLabs failed: {type(exc).__name__}: {exc}") from None

    async def warm(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            await self._http.get("/v1/models")

    async def close(self) -> None:
        await self._http.aclose()
