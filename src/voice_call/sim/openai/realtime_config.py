"""The Realtime transcription session's configuration, in both wire dialects.

Kept in beta terms (`input_audio_format`, `input_audio_transcription`, `turn_detection`) and
rendered as either the beta `transcription_session` object or the GA `session` object with
`type: "transcription"` and its settings under `audio.input`. Updates are validated field by
field with the real API's error codes (`invalid_value`, `invalid_type`,
`missing_required_parameter`) and `param` paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
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
