"""The `realtime` block: calls bridged to a speech-to-speech model (realtime/).

The seed's keys, plus one typed block per model service under `realtime.providers.<id>`
(`openai`, `google`): the service's own settings, strict like every other block, so a typo is
an error with a hint rather than a setting nobody reads. Values left out get the provider's
defaults (realtime/providers/<id>.py).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import Field, model_validator

from voice_call.config.fields import Bool, Int, OptStr, OptUrlPath, field_error
from voice_call.config.section import Section
from voice_call.config.tts import Number, refuse_unknown_ids

RealtimeName = Literal["openai", "google"]
REALTIME_PROVIDERS: tuple[str, ...] = typing.get_args(RealtimeName)
# the bridge's own tools (realtime/tools.py), and the seed's name for its end-call tool
BUILT_IN_TOOLS = ("end_call", "send_dtmf", "consult", "openclaw_end_call")


class OpenAIRealtimeOptions(Section):
    """OpenAI Realtime (`wss://…/v1/realtime?model=…`), audio in and out as `audio/pcmu`."""

    api_key: OptStr = None  # else openaiApiKey / OPENAI_API_KEY
    url: OptStr = None  # the WebSocket URL without the query (a proxy, or the simulator)
    model: OptStr = None  # default gpt-realtime
    voice: OptStr = None  # default "marin"
    speaker_voice: OptStr = None  # the plugin's name for `voice`
    vad: Literal["server_vad", "semantic_vad"] | None = None  # default server_vad
    vad_threshold: Number | None = Field(default=None, ge=0, le=1)  # server_vad; default 0.5
    prefix_padding_ms: Int | None = Field(default=None, ge=0, le=10_000)  # default 300
    silence_duration_ms: Int | None = Field(default=None, ge=0, le=10_000)  # default 500
    eagerness: Literal["low", "medium", "high", "auto"] | None = None  # semantic_vad
    transcription_model: OptStr = None  # the caller's words; default gpt-4o-mini-transcribe
    max_output_tokens: Int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _checked(self) -> OpenAIRealtimeOptions:
        _websocket_url(self.url, "wss://api.openai.com/v1/realtime")
        _fold(self, "speaker_voice", "voice")
        return self


class GeminiLiveOptions(Section):
    """Gemini Live (`BidiGenerateContent` over WebSocket): 16 kHz PCM in, 24 kHz PCM out."""

    api_key: OptStr = None  # else GEMINI_API_KEY / GOOGLE_API_KEY
    url: OptStr = None  # the WebSocket URL without the key (a proxy, or the simulator)
    model: OptStr = None  # default gemini-3.1-flash-live-preview
    voice: OptStr = None  # a prebuilt voice, default "Kore"
    speaker_voice: OptStr = None  # the plugin's name for `voice`
    silence_duration_ms: Int | None = Field(default=None, ge=0, le=10_000)
    prefix_padding_ms: Int | None = Field(default=None, ge=0, le=10_000)
    start_sensitivity: Literal["high", "low"] | None = None  # START_SENSITIVITY_HIGH / _LOW
    end_sensitivity: Literal["high", "low"] | None = None

    @model_validator(mode="after")
    def _checked(self) -> GeminiLiveOptions:
        _websocket_url(
            self.url,
            "wss://generativelanguage.googleapis.com/ws/"
            "google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        )
        _fold(self, "speaker_voice", "voice")
        return self


def _websocket_url(url: str | None, example: str) -> None:
    if url is not None and not url.startswith(("ws://", "wss://")):
        problem = f'"{url}" is not a WebSocket URL — write wss://…, e.g. "{example}"'
        raise field_error("url", problem)


def _fold(section: Section, alias: str, field: str) -> None:
    given = getattr(section, alias)
    if given is None:
        return
    if getattr(section, field) is not None:
        raise field_error("speakerVoice", "the same setting as voice — keep only one of them")
    setattr(section, field, given)
    setattr(section, alias, None)


class RealtimeProviders(Section):
    openai: OpenAIRealtimeOptions | None = None
    google: GeminiLiveOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_providers(cls, data: Any) -> Any:
        return refuse_unknown_ids(data, REALTIME_PROVIDERS, "a realtime voice provider")


class RealtimeToolParameters(Section):
    type: Literal["object"]
    properties: dict[str, Any]  # JSON Schema for each argument: the tool's own, not ours
    required: list[str] | None = None


class RealtimeTool(Section):
    """A function tool offered to the realtime voice model (OpenAI function shape)."""

    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str
    parameters: RealtimeToolParameters

    @model_validator(mode="after")
    def _not_reserved(self) -> RealtimeTool:
        if self.name in BUILT_IN_TOOLS:
            raise field_error("name", f'"{self.name}" is built in — choose another name')
        return self


FastContextSource = Literal["memory", "sessions"]


def _all_fast_context_sources() -> list[FastContextSource]:
    return ["memory", "sessions"]


class RealtimeFastContext(Section):
    """A memory/session lookup tried before a full agent consult."""

    enabled: Bool = False
    timeout_ms: Int = Field(default=800, gt=0)
    max_results: Int = Field(default=3, ge=1)
    sources: list[FastContextSource] = Field(default_factory=_all_fast_context_sources)
    fallback_to_consult: Bool = False


class RealtimeAgentContext(Section):
    """The persona capsule added once when a realtime session starts."""

    enabled: Bool = False
    max_chars: Int = Field(default=6000, gt=0)
    include_identity: Bool = True
    include_workspace_files: Bool = True
    files: list[str] = Field(default_factory=lambda: ["SOUL.md", "IDENTITY.md", "USER.md"])


class RealtimeConfig(Section):
    """The seed's realtime voice settings: calls bridged to a speech-to-speech model
    (realtime/factory.py builds them). What `enabled: true` needs of the rest of the file, and
    the keys this version refuses, are in realtime_checks.py."""

    enabled: Bool = False
    provider: RealtimeName | None = None  # None: "openai"
    stream_path: OptUrlPath = None
    idle_hangup_ms: Int | None = Field(default=None, gt=0)
    # no inbound media this long means the line is dead (then a 2 s grace, then the call ends)
    silence_timeout_ms: Int = Field(default=30_000, gt=0)
    # a consult slower than this gets a short filler line said first
    consult_filler_ms: Int = Field(default=1500, ge=0)
    instructions: OptStr = None
    tool_policy: Literal["safe-read-only", "owner", "none"] = "safe-read-only"
    consult_policy: Literal["auto", "substantive", "always"] = "auto"
    consult_thinking_level: (
        Literal["off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max", "ultra"]
        | None
    ) = None
    consult_fast_mode: Bool | None = None
    tools: list[RealtimeTool] = Field(default_factory=list)
    fast_context: RealtimeFastContext = Field(default_factory=RealtimeFastContext)
    agent_context: RealtimeAgentContext = Field(default_factory=RealtimeAgentContext)
    providers: RealtimeProviders = Field(default_factory=RealtimeProviders)
