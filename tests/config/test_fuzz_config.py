"""Fuzzing the config loader from the file up (tests/config/test_config.py fuzzes `parse_config`
with dicts; here the input is what a user can actually hand us: a file and an environment).

Properties: `load_config` returns a Config or raises ConfigError — never another exception —
for any bytes in the file, any JSON5 document in the seed's shape or wrapped as an OpenClaw
config file, and any values in the environment variables it reads; every ConfigError names
its problems, each as one line.

`VC_FUZZ_EXAMPLES` sets the examples per property (default 150); see docs/fuzzing.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_call.config import Config, ConfigError, load_config

FUZZ = settings(
    max_examples=int(os.environ.get("VC_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ENV_NAMES = [
    "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TELNYX_API_KEY",
    "TELNYX_CONNECTION_ID", "TELNYX_PUBLIC_KEY", "PLIVO_AUTH_ID", "PLIVO_AUTH_TOKEN",
    "NGROK_AUTHTOKEN", "NGROK_DOMAIN", "OPENAI_API_KEY", "ELEVENLABS_API_KEY",
]  # fmt: skip
KEYS = [
    "provider", "fromNumber", "toNumber", "inboundPolicy", "allowFrom", "numbers", "outbound",
    "maxDurationSeconds", "serve", "tunnel", "tailscale", "streaming", "realtime", "store",
    "twilio", "telnyx", "plivo", "publicUrl", "skipSignatureVerification", "tts", "responder",
    "mock", "webhookSecurity", "maxConcurrentCalls", "sessionScope", "stt", "enabled",
]  # fmt: skip
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["twilio", "telnyx", "plivo", "mock", "log", "+15550001234", "ngrok"])
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), values, max_size=8)
openclaw = st.builds(
    lambda config, enabled, extra: {
        "plugins": {"entries": {"voice-call": {"config": config, "enabled": enabled, **extra}}},
        "messages": {"tts": config},
    },
    documents | values,
    st.booleans() | values,
    st.dictionaries(st.text(max_size=8), values, max_size=2),
)
env = st.dictionaries(st.sampled_from(ENV_NAMES), st.text(max_size=40), max_size=6)


def _load(path: Path, text: str | bytes, environ: dict[str, str]) -> Config | None:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_config(path, env=environ)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        assert exc.source == path or all(str(path) in e for e in exc.errors)
        return None


def _json5(document: Any, style: int) -> str:
    # Both spellings: characters as they are, and escaped (`\ud83d\ude00` pairs for emoji,
    # which json5 hands back as two surrogates the loader must join).
    text = json.dumps(document, indent=style or None, ensure_ascii=style % 2 == 0)
    if style == 1:  # JSON5 liberties: comments and a trailing comma
        text = "// voice-call\n" + text.replace("\n}", ",\n}", 1)
    return text


@FUZZ
@given(raw=st.binary(max_size=400) | st.text(max_size=400), environ=env)
def test_any_file_content_loads_or_is_a_config_error(
    tmp_path: Path, raw: bytes | str, environ: dict[str, str]
) -> None:
    _load(tmp_path / "config.json5", raw, environ)


@FUZZ
@given(document=documents | openclaw, style=st.integers(0, 2), environ=env)
def test_any_document_loads_or_is_a_config_error(
    tmp_path: Path, document: dict[str, Any], style: int, environ: dict[str, str]
) -> None:
    config = _load(tmp_path / "config.json5", _json5(document, style), environ)
    if config is not None:
        assert config.provider in ("twilio", "telnyx", "plivo", "mock")


def test_the_properties_can_fail(tmp_path: Path) -> None:
    # a file the loader accepts and one it refuses, so both branches above are live
    assert _load(tmp_path / "ok.json5", '{provider: "mock"}', {}) is not None
    assert _load(tmp_path / "bad.json5", '{provider: "twillio"}', {}) is None
