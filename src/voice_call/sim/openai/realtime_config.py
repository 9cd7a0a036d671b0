"""The Realtime transcription session's configuration, in both wire dialects.

Kept in beta terms (`input_audio_format`, `input_audio_transcription`, `turn_detection`) and
rendered as either the beta `transcription_session` object or the GA `session` object with
`type: "transcription"` and its settings under `audio.input`. Updates are validated field by
field with the real API's error codes (`invalid_value`, `invalid_type`,
`missing_required_parameter`) and `param` paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from voice_call.sim.ai_http import is_int, is_number
from voice_call.sim.openai.vad import RATES, VadSettings

GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


class ClientEventError(Exception):
    """A bad client event: answered with an `error` event; the socket stays open."""

    def __init__(self, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def invalid(param: str, value: Any, supported: Iterable[str]) -> ClientEventError:
    allowed = ", ".join(f"'{s}'" for s in supported)
    return ClientEventError(
        f"Invalid value: '{value}'. Supported values are: {allowed}.", "invalid_value", param
    )


def as_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ClientEventError(
            f"Invalid type for '{param}': expected an object.", "invalid_type", param
        )
    return value


@dataclass
class SessionConfig:
    """The effective session, kept in beta terms and rendered in either dialect."""

    audio_format: str = "pcm16"
    # [M] Off until the client configures it, so an app that forgets gets no transcripts here
    # either; the real default for an intent=transcription socket is not documented.
    transcription: dict[str, Any] | None = None
    turn_detection: dict[str, Any] | None = field(
        default_factory=lambda: {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
        }
    )
    noise_reduction: dict[str, Any] | None = None
    include: list[Any] | None = None

    def vad(self) -> VadSettings | None:
        # [M] semantic_vad is served as server_vad with the same silence rule.
        td = self.turn_detection
        if td is None:
            return None
        return VadSettings(td["threshold"], td["prefix_padding_ms"], td["silence_duration_ms"])

    def set_transcription(self, value: Any, param: str) -> None:
        if value is None:
            self.transcription = None
            return
        value = as_object(value, param)
        merged = dict(self.transcription or {"model": None, "language": None, "prompt": ""})
        for key in ("model", "language", "prompt"):
            if key in value:
                if value[key] is not None and not isinstance(value[key], str):
                    raise ClientEventError(
                        f"Invalid type for '{param}.{key}': expected a string.",
                        "invalid_type",
                        f"{param}.{key}",
                    )
                merged[key] = value[key]
        self.transcription = merged

    def set_turn_detection(self, value: Any, param: str) -> None:
        if value is None:
            self.turn_detection = None
            return
        value = as_object(value, param)
        kind = value.get("type", "server_vad")
        if kind not in ("server_vad", "semantic_vad"):
            raise invalid(f"{param}.type", kind, ["server_vad", "semantic_vad"])
        merged = dict(self.turn_detection or SessionConfig().turn_detection or {})
        merged["type"] = kind
        for key, lo, hi in (
            ("threshold", 0.0, 1.0),
            ("prefix_padding_ms", 0, 10_000),
            ("silence_duration_ms", 0, 10_000),
        ):
            if value.get(key) is None:
                continue
            ok = is_number(value[key]) if key == "threshold" else is_int(value[key])
            if not ok or not lo <= value[key] <= hi:
                raise ClientEventError(
                    f"Invalid '{param}.{key}': expected a value between {lo} and {hi}.",
                    "invalid_value",
                    f"{param}.{key}",
                )
            merged[key] = value[key]
        self.turn_detection = merged

    def set_noise_reduction(self, value: Any, param: str) -> None:
        self.noise_reduction = None if value is None else as_object(value, param)

    def set_include(self, session: dict[str, Any]) -> None:
        if "include" in session:
            include = session["include"]
            if include is not None and not isinstance(include, list):
                raise ClientEventError(
                    "Invalid type for 'session.include': expected an array.",
                    "invalid_type",
                    "session.include",
                )
            self.include = include

    def apply_beta(self, session: Any) -> None:
        session = as_object(session, "session")
        if "input_audio_format" in session:
            fmt = session["input_audio_format"]
            if fmt not in RATES:
                raise invalid("session.input_audio_format", fmt, RATES)
            self.audio_format = fmt
        if "input_audio_transcription" in session:
            self.set_transcription(
                session["input_audio_transcription"], "session.input_audio_transcription"
            )
        if "turn_detection" in session:
            self.set_turn_detection(session["turn_detection"], "session.turn_detection")
        if "input_audio_noise_reduction" in session:
            self.set_noise_reduction(
                session["input_audio_noise_reduction"], "session.input_audio_noise_reduction"
            )
        self.set_include(session)

    def apply_ga(self, session: Any) -> None:
        session = as_object(session, "session")
        kind = session.get("type")
        if kind is None:
            raise ClientEventError(
                "Missing required parameter: 'session.type'.",
                "missing_required_parameter",
                "session.type",
            )
        if kind != "transcription":
            # The real socket would accept "realtime" only on a model URL, never with this intent.
            raise invalid("session.type", kind, ["transcription"])
        audio = as_object(session.get("audio") or {}, "session.audio")
        given = as_object(audio.get("input") or {}, "session.audio.input")
        param = "session.audio.input"
        if given.get("format") is not None:
            fmt = as_object(given["format"], f"{param}.format")
            name = fmt.get("type")
            if name not in GA_FORMATS:
                raise invalid(f"{param}.format.type", name, GA_FORMATS)
            if name == "audio/pcm" and fmt.get("rate", 24000) != 24000:
                raise invalid(f"{param}.format.rate", fmt.get("rate"), ["24000"])
            self.audio_format = GA_FORMATS[name]
        if "transcription" in given:
            self.set_transcription(given["transcription"], f"{param}.transcription")
        if "turn_detection" in given:
            self.set_turn_detection(given["turn_detection"], f"{param}.turn_detection")
        if "noise_reduction" in given:
            self.set_noise_reduction(given["noise_reduction"], f"{param}.noise_reduction")
        self.set_include(session)

    def render(self, dialect: str, session_id: str, expires_at: int) -> dict[str, Any]:
        if dialect == "beta":
            return {
                "id": session_id,
                "object": "realtime.transcription_session",
                "expires_at": expires_at,
                "modalities": ["text"],
                "input_audio_format": self.audio_format,
                "input_audio_transcription": self.transcription,
                "turn_detection": self.turn_detection,
                "input_audio_noise_reduction": self.noise_reduction,
                "include": self.include,
            }
        ga_format: dict[str, Any] = {
            "type": next(k for k, v in GA_FORMATS.items() if v == self.audio_format)
        }
        if self.audio_format == "pcm16":
            ga_format["rate"] = 24000
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": ga_format,
                    "transcription": self.transcription,
                    "noise_reduction": self.noise_reduction,
                    "turn_detection": self.turn_detection,
                }
            },
            "include": self.include,
        }


# A speech-to-speech session (`session.type: "realtime"`, GA only): what it accepts at each level.
REALTIME_SESSION_KEYS = {
    "type", "model", "instructions", "audio", "output_modalities", "tools", "tool_choice",
    "max_output_tokens", "include", "tracing", "truncation", "prompt",
}  # fmt: skip
INPUT_KEYS = {"format", "transcription", "turn_detection", "noise_reduction"}
OUTPUT_KEYS = {"format", "voice", "speed"}
TURN_SWITCHES = ("create_response", "interrupt_response")


def unknown_keys(given: dict[str, Any], known: set[str], param: str) -> None:
    """The real API refuses a misspelt setting rather than ignoring it; so does the fake."""
    for key in given:
        if key not in known:
            raise ClientEventError(
                f"Unknown parameter: '{param}.{key}'.", "unknown_parameter", f"{param}.{key}"
            )


def ga_format(value: Any, param: str) -> str:
    fmt = as_object(value, param)
    name = fmt.get("type")
    if name not in GA_FORMATS:
        raise invalid(f"{param}.type", name, GA_FORMATS)
    if name == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise invalid(f"{param}.rate", fmt.get("rate"), ["24000"])
    return GA_FORMATS[name]


def render_format(audio_format: str) -> dict[str, Any]:
    rendered: dict[str, Any] = {"type": next(k for k, v in GA_FORMATS.items() if v == audio_format)}
    if audio_format == "pcm16":
        rendered["rate"] = 24000
    return rendered


@dataclass
class ConversationConfig:
    """A `type: "realtime"` session: the input side reuses `SessionConfig` (format,
    transcription, VAD); the rest is what the model says and how."""

    model: str = "gpt-realtime"
    input: SessionConfig = field(default_factory=SessionConfig)
    output_format: str = "pcm16"
    voice: str = "alloy"
    instructions: str = ""
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    max_output_tokens: int | str = "inf"
    # turn_detection switches the transcription session has no use for
    create_response: bool = True
    interrupt_response: bool = True
    eagerness: str | None = None

    def copy(self) -> ConversationConfig:
        return replace(self, input=replace(self.input), tools=list(self.tools))

    def apply(self, session: Any) -> None:
        session = as_object(session, "session")
        kind = session.get("type")
        if kind != "realtime":
            raise invalid("session.type", kind, ["realtime"])
        unknown_keys(session, REALTIME_SESSION_KEYS, "session")
        for key in ("model", "instructions"):
            if key in session:
                self._set_string(key, session[key])
        audio = as_object(session.get("audio") or {}, "session.audio")
        unknown_keys(audio, {"input", "output"}, "session.audio")
        self._apply_input(as_object(audio.get("input") or {}, "session.audio.input"))
        self._apply_output(as_object(audio.get("output") or {}, "session.audio.output"))
        if "output_modalities" in session:
            modalities = session["output_modalities"]
            if modalities not in (["audio"], ["text"]):
                raise invalid("session.output_modalities", modalities, ['["audio"]', '["text"]'])
            self.output_modalities = list(modalities)
        if "tools" in session:
            tools = session["tools"] or []
            self.tools = [self._tool(t, f"session.tools[{i}]") for i, t in enumerate(tools)]
        if "tool_choice" in session:
            choice = session["tool_choice"]
            if choice not in ("auto", "none", "required") and not isinstance(choice, dict):
                raise invalid("session.tool_choice", choice, ["auto", "none", "required"])
            self.tool_choice = choice
        if "max_output_tokens" in session:
            tokens = session["max_output_tokens"]
            if tokens != "inf" and not (is_int(tokens) and 1 <= tokens <= 4096):
                raise ClientEventError(
                    "Invalid 'session.max_output_tokens': expected an integer between 1 and "
                    "4096, or 'inf'.",
                    "invalid_value",
                    "session.max_output_tokens",
                )
            self.max_output_tokens = tokens

    def _set_string(self, key: str, value: Any) -> None:
        if not isinstance(value, str):
            raise ClientEventError(
                f"Invalid type for 'session.{key}': expected a string.",
                "invalid_type",
                f"session.{key}",
            )
        setattr(self, key, value)

    def _apply_input(self, given: dict[str, Any]) -> None:
        param = "session.audio.input"
        unknown_keys(given, INPUT_KEYS, param)
        if given.get("format") is not None:
            self.input.audio_format = ga_format(given["format"], f"{param}.format")
        if "transcription" in given:
            self.input.set_transcription(given["transcription"], f"{param}.transcription")
        if "noise_reduction" in given:
            self.input.set_noise_reduction(given["noise_reduction"], f"{param}.noise_reduction")
        if "turn_detection" not in given:
            return
        detection = given["turn_detection"]
        if isinstance(detection, dict):
            detection = dict(detection)
            for key in TURN_SWITCHES:
                value = detection.pop(key, None)
                if value is not None and not isinstance(value, bool):
                    raise ClientEventError(
                        f"Invalid type for '{param}.turn_detection.{key}': expected a boolean.",
                        "invalid_type",
                        f"{param}.turn_detection.{key}",
                    )
                setattr(self, key, True if value is None else value)
            eagerness = detection.pop("eagerness", None)
            levels = ["low", "medium", "high", "auto"]
            if eagerness is not None and eagerness not in levels:
                raise invalid(f"{param}.turn_detection.eagerness", eagerness, levels)
            self.eagerness = eagerness
            detection.pop("idle_timeout_ms", None)
        self.input.set_turn_detection(detection, f"{param}.turn_detection")

    def _apply_output(self, given: dict[str, Any]) -> None:
        param = "session.audio.output"
        unknown_keys(given, OUTPUT_KEYS, param)
        if given.get("format") is not None:
            self.output_format = ga_format(given["format"], f"{param}.format")
        if "voice" in given:
            voice = given["voice"]
            if not isinstance(voice, str) or not voice:
                raise ClientEventError(
                    f"Invalid type for '{param}.voice': expected a string.",
                    "invalid_type",
                    f"{param}.voice",
                )
            self.voice = voice

    @staticmethod
    def _tool(tool: Any, param: str) -> dict[str, Any]:
        checked = dict(as_object(tool, param))
        if checked.get("type") != "function":
            raise invalid(f"{param}.type", checked.get("type"), ["function", "mcp"])
        if not isinstance(checked.get("name"), str) or not checked["name"]:
            raise ClientEventError(
                f"Missing required parameter: '{param}.name'.",
                "missing_required_parameter",
                f"{param}.name",
            )
        as_object(checked.get("parameters", {}), f"{param}.parameters")
        return checked

    def turn_detection(self) -> dict[str, Any] | None:
        detection = self.input.turn_detection
        if detection is None:
            return None
        switches = {key: getattr(self, key) for key in TURN_SWITCHES}
        extra = {"eagerness": self.eagerness} if detection["type"] == "semantic_vad" else {}
        return {**detection, **switches, **extra}

    def render(self, session_id: str, expires_at: int) -> dict[str, Any]:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "expires_at": expires_at,
            "output_modalities": self.output_modalities,
            "instructions": self.instructions,
            "audio": {
                "input": {
                    "format": render_format(self.input.audio_format),
                    "transcription": self.input.transcription,
                    "noise_reduction": self.input.noise_reduction,
                    "turn_detection": self.turn_detection(),
                },
                "output": {
                    "format": render_format(self.output_format),
                    "voice": self.voice,
                    "speed": 1.0,
                },
            },
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "max_output_tokens": self.max_output_tokens,
        }
