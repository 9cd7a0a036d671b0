"""Config: defaults, the seed README block, OpenClaw files, env fallbacks, errors, redaction."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from voice_call.config import (
    Config,
    ConfigError,
    default_config_path,
    format_path,
    load_config,
    parse_config,
    redacted,
    state_home,
)
from voice_call.models import Mode

FIXTURES = Path(__file__).parent / "fixtures"
# The seed README lives in shared/ beside the checkout (CI lays it there too); the block is also
# kept as a fixture so the load test runs anywhere.
SEED_README = Path(__file__).resolve().parents[3] / "shared" / "reference" / "seed-README.md"
SEED_BLOCK = FIXTURES / "config_seed_readme.json5"
TWILIO: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "+15550001234",
    "twilio": {"accountSid": "AC123", "authToken": "tok"},
}


def errors_of(data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={} if env is None else env)
    return info.value.errors


def seed_config_block() -> str:
    """The first ```json5 block of the seed README, with the stray translation marks removed."""
    text = SEED_README.read_text(encoding="utf-8").replace("（轉為繁體中文）", "")
    match = re.search(r"```json5\n(.*?)```", text, re.S)
    assert match, "no json5 block in the seed README"
    return match.group(1)


# --- defaults and paths ----------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config({}, env={})
    assert config.enabled is True
    assert config.provider == "mock"
    assert (config.serve.bind, config.serve.port, config.serve.path) == (
        "127.0.0.1",
        3334,
        "/voice/webhook",
    )
    assert config.outbound.default_mode is Mode.NOTIFY
    assert config.outbound.notify_hangup_delay_sec == 3
    assert config.max_duration_seconds == 300
    assert config.transcript_timeout_ms == 180000
    assert config.stale_call_reaper_seconds == 120
    assert config.max_concurrent_calls == 1
    assert config.inbound_policy == "disabled"
    assert config.session_scope == "per-phone"
    assert config.streaming.stream_path == "/voice/stream"
    assert config.realtime.stream_path == "/voice/stream/realtime"
    assert config.store.backend == "sqlite" and config.store.retention_days == 30
    assert config.mock.outcome == "answer" and len(config.mock.replies) == 3
    assert config.responder.provider == "none"
    assert config.twilio is None and config.warnings == []


def test_state_home_and_default_path() -> None:
    assert state_home({"HOME": "/home/x"}) == Path("/home/x/.voicecall")
    assert state_home({"VOICECALL_HOME": "/srv/vc"}) == Path("/srv/vc")
    assert default_config_path({"VOICECALL_HOME": "/srv/vc"}) == Path("/srv/vc/config.json5")
    assert default_config_path({"VOICECALL_CONFIG": "/etc/vc.json5"}) == Path("/etc/vc.json5")


def test_missing_default_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(env={"VOICECALL_HOME": str(tmp_path)})
    assert config.provider == "mock"


def test_default_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.json5").write_text("{ maxConcurrentCalls: 4, }")
    assert load_config(env={"VOICECALL_HOME": str(tmp_path)}).max_concurrent_calls == 4


def test_explicit_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.json5", env={})
    with pytest.raises(ConfigError, match="file not found"):
        load_config(env={"VOICECALL_CONFIG": str(tmp_path / "typo.json5")})


def test_bad_json5_and_duplicate_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json5"
    bad.write_text("{ provider: 'mock', ")
    with pytest.raises(ConfigError, match="not valid JSON5"):
        load_config(bad, env={})
    bad.write_text("{ provider: 'mock', provider: 'twilio' }")
    with pytest.raises(ConfigError, match="Duplicate key"):
        load_config(bad, env={})


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json5"
    empty.write_text("\n")
    assert load_config(empty, env={}).provider == "mock"


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json5"
    path.write_text("{ maxConcurrentCalls: 0 }")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == path
    assert info.value.errors[0].startswith("maxConcurrentCalls: must be at least 1")


def test_top_level_must_be_an_object() -> None:
    assert errors_of([1, 2])[0].startswith("(top level): expected an object")


# --- the seed README and OpenClaw files ------------------------------------------------------


def test_seed_readme_fixture_is_the_readme_block() -> None:
    if SEED_README.exists():  # shared/ is beside every checkout we run in, CI included
        assert SEED_BLOCK.read_text(encoding="utf-8") == seed_config_block()
    assert 'provider: "twilio"' in SEED_BLOCK.read_text(encoding="utf-8")


def test_seed_readme_config_block_loads_as_a_file() -> None:
    config = load_config(SEED_BLOCK, env={})
    assert config.provider == "twilio"
    assert config.from_number == "+15550001234"
    assert config.to_number == "+15550005678"
    assert config.twilio is not None and config.twilio.account_sid == "ACxxxxxxxx"
    assert config.plivo is not None and config.plivo.auth_id == "MAxxxxxxxxxxxxxxxxxxxx"
    assert config.serve.port == 3334 and config.serve.path == "/voice/webhook"
    assert config.streaming.enabled and config.streaming.stream_path == "/voice/stream"
    assert config.outbound.default_mode is Mode.NOTIFY
    assert config.warnings == []


def test_openclaw_config_file() -> None:
    config = load_config(FIXTURES / "config_openclaw.json5", env={})
    assert config.provider == "telnyx"
    assert config.telnyx is not None and config.telnyx.connection_id == "1234567890"
    assert config.allow_from == ["+15550009999"]
    assert config.serve.port == 4000
    assert config.enabled is True
    assert config.core_tts == {"provider": "openai"}  # messages.tts, under our tts block


def test_openclaw_entry_disabled_and_error_paths() -> None:
    entry = {"enabled": False, "config": {"provider": "twilio"}}
    config = parse_config({"plugins": {"entries": {"voice-call": entry}}}, env={})
    assert config.enabled is False  # disabled: provider checks are skipped
    errors = errors_of({"plugins": {"entries": {"voice-call": {"config": {"maxDurationSecs": 1}}}}})
    assert errors == [
        'plugins.entries["voice-call"].config.maxDurationSecs: unknown key'
        " — remove it or check its spelling (did you mean 'maxDurationSeconds'?)"
    ]


def test_openclaw_file_without_our_entry() -> None:
    errors = errors_of({"plugins": {"entries": {"other": {}}}})
    assert errors[0].startswith('plugins.entries["voice-call"]: not found')


# --- environment -----------------------------------------------------------------------------


def test_env_fallbacks_for_twilio() -> None:
    env = {
        "TWILIO_ACCOUNT_SID": "AC999",
        "TWILIO_AUTH_TOKEN": "secret-token",
        "TWILIO_FROM_NUMBER": "+15550002222",
    }
    config = parse_config({"provider": "twilio"}, env=env)
    assert config.twilio is not None
    assert (config.twilio.account_sid, config.twilio.auth_token) == ("AC999", "secret-token")
    assert config.from_number == "+15550002222"


def test_env_fallbacks_for_telnyx_plivo_ngrok_and_ai_keys() -> None:
    env = {
        "TELNYX_API_KEY": "k",
        "TELNYX_CONNECTION_ID": "c",
        "TELNYX_PUBLIC_KEY": "p",
        "PLIVO_AUTH_ID": "MA1",
        "PLIVO_AUTH_TOKEN": "pt",
        "NGROK_AUTHTOKEN": "ngrok-tok",
        "NGROK_DOMAIN": "me.ngrok.app",
        "OPENAI_API_KEY": "sk-openai",
        "ELEVENLABS_API_KEY": "xi-key",
    }
    telnyx = parse_config({"provider": "telnyx", "fromNumber": "+15550001234"}, env=env)
    assert telnyx.telnyx is not None and telnyx.telnyx.public_key == "p"
    assert telnyx.plivo is None  # not the provider and no block: no block invented
    assert telnyx.tunnel.ngrok_auth_token == "ngrok-tok"
    assert telnyx.tunnel.ngrok_domain == "me.ngrok.app"
    assert telnyx.openai_api_key == "sk-openai"
    assert telnyx.elevenlabs_api_key == "xi-key"
    plivo = parse_config({"provider": "plivo", "fromNumber": "+15550001234"}, env=env)
    assert plivo.plivo is not None and plivo.plivo.auth_token == "pt"


def test_mock_with_carrier_env_gets_no_carrier_block() -> None:
    config = parse_config({}, env={"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_FROM_NUMBER": "+1555"})
    assert config.twilio is None and config.from_number is None


def test_file_wins_over_env() -> None:
    env = {
        "TWILIO_ACCOUNT_SID": "ACenv",
        "TWILIO_AUTH_TOKEN": "env",
        "TWILIO_FROM_NUMBER": "+15559999999",
        "OPENAI_API_KEY": "sk-env",
        "NGROK_AUTHTOKEN": "env",
    }
    data = {**TWILIO, "openaiApiKey": "sk-file", "tunnel": {"ngrokAuthToken": "file"}}
    config = parse_config(data, env=env)
    assert config.twilio is not None and config.twilio.account_sid == "AC123"
    assert config.twilio.auth_token == "tok"
    assert config.from_number == "+15550001234"
    assert config.openai_api_key == "sk-file"
    assert config.tunnel.ngrok_auth_token == "file"


def test_bad_env_value_names_its_variable() -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM_NUMBER": "5"}
    [error] = errors_of({"provider": "twilio"}, env=env)
    assert error.startswith('fromNumber (from TWILIO_FROM_NUMBER): "5" is not an E.164')


def test_load_config_defaults_to_os_environ(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VOICECALL_HOME", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-os")
    assert load_config().openai_api_key == "sk-from-os"


# --- validation ------------------------------------------------------------------------------


def test_every_error_at_once() -> None:
    data = {
        "provider": "twilio",
        "fromNumber": "+15550001234",
        "twilio": {"accountSid": "AC1"},  # 1: no authToken
        "serve": {"port": 70000},  # 2: out of range
        "outbound": {"defaultMode": "shout"},  # 3: not a mode
    }
    errors = errors_of(data)
    assert len(errors) == 3
    paths = sorted(e.split(":")[0] for e in errors)
    assert paths == ["outbound.defaultMode", "serve.port", "twilio.authToken"]
    assert str(ConfigError(errors)) == "\n".join(errors)


def test_required_when_provider_messages() -> None:
    assert errors_of({"provider": "twilio"}) == [
        'fromNumber: required when provider is "twilio"'
        " — set it in the config or TWILIO_FROM_NUMBER",
        'twilio.accountSid: required when provider is "twilio"'
        " — set it in the config or TWILIO_ACCOUNT_SID",
        'twilio.authToken: required when provider is "twilio"'
        " — set it in the config or TWILIO_AUTH_TOKEN",
    ]
    plivo = errors_of({"provider": "plivo", "fromNumber": "+15550001234", "plivo": {"authId": ""}})
    assert [e.split(":")[0] for e in plivo] == ["plivo.authId", "plivo.authToken"]


def test_telnyx_public_key_can_be_skipped_for_local_dev() -> None:
    data = {
        "provider": "telnyx",
        "fromNumber": "+15550001234",
        "telnyx": {"apiKey": "k", "connectionId": "c"},
    }
    assert [e.split(":")[0] for e in errors_of(data)] == ["telnyx.publicKey"]
    config = parse_config({**data, "skipSignatureVerification": True}, env={})
    assert config.skip_signature_verification


def test_realtime_and_streaming_together_are_refused_and_streaming_alone_is_not() -> None:
    # Realtime voice replaces STT → responder → TTS on a call: both on is one clear error.
    both = {
        "provider": "plivo",
        "fromNumber": "+15550001234",
        "plivo": {"authId": "a", "authToken": "t"},
        "inboundPolicy": "open",
        "realtime": {"enabled": True},
        "streaming": {"enabled": True},
    }
    assert errors_of(both) == [
        "realtime.enabled: cannot be used together with streaming.enabled — turn one of them"
        " off (realtime: the model hears and answers; streaming: STT, responder and TTS)"
    ]
    plivo = {
        "provider": "plivo",
        "fromNumber": "+15550001234",
        "plivo": {"authId": "a", "authToken": "t"},
    }
    streamed = parse_config({**plivo, "streaming": {"enabled": True, "dropGraceMs": 0}}, env={})
    assert streamed.streaming.enabled and streamed.streaming.drop_grace_ms == 0
    assert streamed.streaming.token_ttl_seconds == 120 and streamed.streaming.protect_greeting
    assert streamed.core_tts == {}


def test_disabled_config_skips_provider_checks() -> None:
    assert parse_config({"enabled": False, "provider": "twilio"}, env={}).enabled is False


def test_unknown_keys_get_suggestions() -> None:
    errors = errors_of({"fromNumbr": "+15550001234", "serve": {"prot": 1}, "zzz": 1})
    assert errors == [
        "fromNumbr: unknown key — remove it or check its spelling (did you mean 'fromNumber'?)",
        "serve.prot: unknown key — remove it or check its spelling (did you mean 'port'?)",
        "zzz: unknown key — remove it or check its spelling",
    ]
    proxies = errors_of({"webhookSecurity": {"trustedProxyIps": []}})
    assert "did you mean 'trustedProxyIPs'?" in proxies[0]


def test_misspelt_choice_gets_a_suggestion() -> None:
    assert errors_of({"provider": "twillio"}) == [
        'provider: must be one of "twilio", "telnyx", "plivo" or "mock", got "twillio"'
        ' — did you mean "twilio"?'
    ]
    assert errors_of({"inboundPolicy": "zzz"})[0].endswith("— use one of those")


def test_snake_case_names_are_accepted() -> None:
    config = parse_config(
        {"max_concurrent_calls": 2, "webhook_security": {"trusted_proxy_ips": []}}
    )
    assert config.max_concurrent_calls == 2


def test_bad_e164_numbers() -> None:
    errors = errors_of(
        {
            "fromNumber": "5550001234",
            "toNumber": "+0123",
            "allowFrom": ["+15550001234", "nope"],
            "numbers": {"123": {}},
        }
    )
    assert [e.split(":")[0] for e in errors] == [
        "fromNumber",
        "toNumber",
        "allowFrom[1]",
        'numbers["123"]',
    ]
    assert "is not an E.164 phone number" in errors[0]
    assert 'e.g. "+15550001234"' in errors[0]


def test_phone_separators_are_normalised() -> None:
    config = parse_config({"toNumber": "+1 (555) 000-1234", "numbers": {"+1 555 000 9999": {}}})
    assert config.to_number == "+15550001234"
    assert list(config.numbers) == ["+15550009999"]


def test_wrong_types_name_the_expected_type() -> None:
    errors = errors_of(
        {
            "serve": {"port": "3334"},
            "enabled": "yes",
            "agentId": 5,
            "allowFrom": "+15550001234",
            "outbound": 3,
        }
    )
    assert errors == [  # in the order of the file
        'serve.port: expected a whole number, got "3334" — write a number without quotes',
        'enabled: expected true or false, got "yes" — write true or false without quotes',
        "agentId: expected a string, got 5 — put it in quotes",
        'allowFrom: expected a list, got "+15550001234" — write it as [ ... ]',
        "outbound: expected an object, got 3 — write it as { ... }",
    ]


def test_numeric_bounds() -> None:
    errors = errors_of(
        {"maxDurationSeconds": 0, "staleCallReaperSeconds": -1, "serve": {"port": -1}}
    )
    assert errors == [
        "maxDurationSeconds: must be greater than 0, got 0 — use a larger number",
        "staleCallReaperSeconds: must be at least 0, got -1 — use a larger number",
        "serve.port: must be at least 0, got -1 — use a larger number",
    ]
    assert parse_config({"serve": {"port": 0}}).serve.port == 0  # any free port


def test_paths_are_normalised() -> None:
    config = parse_config(
        {
            "serve": {"path": "hooks/voice/webhook/"},
            "streaming": {"streamPath": "media/"},
            "tailscale": {"path": "/x/"},
        }
    )
    assert config.serve.path == "/hooks/voice/webhook"
    assert config.streaming.stream_path == "/media"
    assert config.tailscale.path == "/x"
    assert config.realtime.stream_path == "/hooks/voice/stream/realtime"
    assert parse_config({"serve": {"path": "/"}}).serve.path == "/"
    assert errors_of({"serve": {"path": "/a b"}})[0].startswith("serve.path: ")


def test_tailscale_funnel_port() -> None:
    assert parse_config({"tailscale": {"mode": "funnel", "port": 8443}}).tailscale.port == 8443
    errors = errors_of({"tailscale": {"mode": "funnel", "port": 8080}})
    assert errors == [
        "tailscale.port: Tailscale Funnel only serves ports 443, 8443 and 10000, got 8080"
        " — use one of those"
    ]


def test_public_url_must_be_http() -> None:
    assert parse_config({"publicUrl": "https://x.example/voice/webhook"}).public_url
    assert errors_of({"publicUrl": "ftp://x"})[0].startswith("publicUrl: ")
    assert errors_of({"publicUrl": "x.example"})[0].startswith("publicUrl: ")


def test_store_as_string_or_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    as_string = parse_config({"store": "~/calls/voice.db"})
    assert as_string.store.backend == "sqlite"
    assert as_string.store.path == "/home/tester/calls/voice.db"
    assert parse_config({"store": {"backend": "sqlite"}}).store.retention_days == 30
    assert errors_of({"store": {"backend": "mysql", "retentionDays": -1}})[0].startswith(
        "store.backend: must be one of"
    )


def test_mock_callee_script() -> None:
    config = parse_config({"mock": {"outcome": "busy", "silent": True, "hangupAfterTurns": 2}})
    assert (config.mock.outcome, config.mock.silent, config.mock.hangup_after_turns) == (
        "busy",
        True,
        2,
    )
    assert errors_of({"mock": {"outcome": "explode"}})[0].startswith("mock.outcome: must be one of")
    assert parse_config({"responder": {"provider": "echo"}}).responder.provider == "echo"


def test_responder_section() -> None:
    config = parse_config(
        {
            "responder": {"provider": "openai", "baseUrl": "http://127.0.0.1:11434/v1"},
            "responseModel": "ollama/llama3.2",
        }
    )
    assert config.responder.base_url == "http://127.0.0.1:11434/v1"
    assert config.responder.apology_text.startswith("Sorry")
    assert config.response_timeout_ms == 30000 and config.session_scope == "per-phone"
    hook = parse_config({"responder": {"provider": "hook", "url": "https://example.com/turn"}})
    assert hook.responder.url == "https://example.com/turn"
    assert errors_of({"responder": {"provider": "hook"}}) == [
        'responder.url: required when provider is "hook" — set it to the URL that answers each turn'
    ]
    assert errors_of({"responder": {"provider": "openai", "baseUrl": "ftp://x"}})[0].startswith(
        "responder.baseUrl: "
    )
    assert errors_of({"responder": {"apologyText": ""}})[0].startswith("responder.apologyText:")


def test_parse_config_does_not_mutate_its_input() -> None:
    data: dict[str, Any] = {"provider": "log", "twilio": {"from": "+15550001234"}}
    before = json.dumps(data)
    parse_config(data, env={"TWILIO_ACCOUNT_SID": "x"})
    assert json.dumps(data) == before


# --- legacy keys -----------------------------------------------------------------------------


def test_legacy_migrations_warn() -> None:
    config = parse_config(
        {
            "provider": "log",
            "twilio": {"from": "+15550001234"},
            "streaming": {"sttProvider": "openai-realtime", "openaiApiKey": "sk", "sttModel": "m"},
            "tts": {"provider": "openai", "openai": {"voice": "alloy"}},
            "stt": {"provider": "openai"},
        },
        env={},
    )
    assert config.provider == "mock"
    assert config.from_number == "+15550001234"
    assert config.streaming.provider == "openai"
    openai = config.streaming.providers.openai
    assert openai is not None and (openai.api_key, openai.model) == ("sk", "m")
    assert config.tts.layer() == {"provider": "openai", "providers": {"openai": {"voice": "alloy"}}}
    assert [w.split(":")[0] for w in config.warnings] == [
        "provider",
        "twilio.from",
        "streaming.sttProvider",
        "streaming.openaiApiKey",
        "streaming.sttModel",
        "tts.openai",
        "stt",
    ]
    assert all(" — " in w for w in config.warnings)
    dumped = config.model_dump(by_alias=True)
    assert "warnings" not in dumped and "warnings" not in redacted(config)


def test_warnings_cannot_be_set_from_the_file() -> None:
    assert errors_of({"warnings": ["x"]})[0].startswith("warnings: unknown key")


# --- redaction -------------------------------------------------------------------------------


def test_redacted_hides_secrets() -> None:
    long_token = "0123456789abcdef0123456789abcd"
    config = parse_config(
        {
            **TWILIO,
            "twilio": {"accountSid": "AC123", "authToken": long_token},
            "telnyx": {"apiKey": "short", "publicKey": "PUBLIC"},
            "tunnel": {"ngrokAuthToken": "ngr0k-t0ken"},
            "tts": {"providers": {"elevenlabs": {"apiKey": "xi", "voiceId": "v", "modelId": "m"}}},
            "realtime": {"providers": {"google": {"apiKey": "g", "voice": "Kore"}}},
            "responder": {"provider": "hook", "url": "https://user:hunter2@hook.example/turn"},
        },
        env={"OPENAI_API_KEY": "sk-env"},
    )
    out = redacted(config)
    assert out["twilio"] == {"accountSid": "AC123", "authToken": "***abcd", "region": "us1"}
    assert out["telnyx"] == {"apiKey": "***", "publicKey": "PUBLIC"}  # public key is public
    assert out["tunnel"]["ngrokAuthToken"] == "***"
    assert out["openaiApiKey"] == "***"
    assert out["tts"]["providers"]["elevenlabs"] == {
        "apiKey": "***",
        "voiceId": "v",
        "modelId": "m",
    }
    assert out["realtime"]["providers"]["google"] == {"apiKey": "***", "voice": "Kore"}
    assert out["responder"]["url"] == "https://user:***@hook.example/turn"
    assert "toNumber" not in out and "publicUrl" not in out  # None values left out
    text = json.dumps(out)
    for secret in (long_token, "short", "ngr0k", "sk-env", "hunter2", '"xi"', '"g"'):
        assert secret not in text


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


def _section_strategy(model: type[Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts using the model's real keys (so validation goes deep), plus stray ones."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in model.model_fields.items():
        values = json_values
        sub = field.annotation
        for arg in (sub, *getattr(sub, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and depth < 2:
                values = values | _section_strategy(arg, depth + 1)
        optional[field.alias or name] = values
    optional["stray"] = json_values
    return st.fixed_dictionaries({}, optional=optional)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_section_strategy(Config) | st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_arbitrary_dicts_give_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    try:
        result = parse_config(data, env={"TWILIO_ACCOUNT_SID": "AC1"})
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and ": " in e for e in exc.errors)
    else:
        assert isinstance(result, Config)
        json.dumps(redacted(result))


NUMERIC_FIELDS = [
    (("maxDurationSeconds",), 1, None),
    (("staleCallReaperSeconds",), 0, None),
    (("maxConcurrentCalls",), 1, None),
    (("transcriptTimeoutMs",), 1, None),
    (("serve", "port"), 0, 65535),
    (("outbound", "notifyHangupDelaySec"), 0, None),
    (("streaming", "maxConnections"), 1, None),
    (("mock", "answerDelayMs"), 0, None),
    (("store", "retentionDays"), 0, None),
]


@st.composite
def bad_numeric(draw: st.DrawFn) -> tuple[tuple[str, ...], Any]:
    loc, low, high = draw(st.sampled_from(NUMERIC_FIELDS))
    bad = [
        st.integers(max_value=low - 1),
        st.text(max_size=6),
        st.floats(),
        st.booleans(),
        st.none() if len(loc) == 1 else st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ]
    if high is not None:
        bad.append(st.integers(min_value=high + 1))
    return loc, draw(st.one_of(bad))


@settings(max_examples=200, deadline=None)
@given(bad_numeric())
def test_bad_numeric_values_are_rejected_at_their_path(case: tuple[tuple[str, ...], Any]) -> None:
    loc, value = case
    data: dict[str, Any] = {loc[-1]: value}
    for key in reversed(loc[:-1]):
        data = {key: data}
    errors = errors_of(data)
    assert any(e.startswith(format_path(loc) + ": ") for e in errors), errors


def test_escaped_surrogate_pairs_load_and_lone_surrogates_are_a_config_error(
    tmp_path: Path,
) -> None:
    paired = tmp_path / "paired.json5"
    paired.write_text('{inboundGreeting: "Hi \\ud83d\\ude00"}', encoding="utf-8")
    assert load_config(paired, env={}).inbound_greeting == "Hi \U0001f600"
    lone = tmp_path / "lone.json5"
    lone.write_text('{inboundGreeting: "x \\ud800 y"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON5"):
        load_config(lone, env={})
