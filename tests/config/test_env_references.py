"""Values taken from the environment: ``"${NAME}"`` (whole or embedded, ``$${`` for a literal)
and the plugin's secret references ``{source: "env", id: "NAME"}``, at any depth; an unset
variable is an error naming the key and the variable; nothing substituted is ever printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import json5
import pytest

from tests.cli.stack import Cli, base_env, write_config
from voice_call.config import ConfigError, load_config, parse_config, redacted

SECRET = "tw-secret-token-0123456789abcdef"
TWILIO_BY_REFERENCE: dict[str, Any] = {
    "provider": "twilio",
    "fromNumber": "${FROM_NUMBER}",
    "twilio": {
        "accountSid": {"source": "env", "provider": "default", "id": "SID"},
        "authToken": "${TOKEN}",
    },
}
ENV = {"FROM_NUMBER": "+15550001234", "SID": "AC0123", "TOKEN": SECRET}


def errors_of(data: Any, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, env=env)
    return info.value.errors


def test_whole_string_and_secret_reference_are_filled_from_the_environment() -> None:
    config = parse_config(TWILIO_BY_REFERENCE, env=ENV)
    assert config.from_number == "+15550001234"
    assert config.twilio is not None
    assert (config.twilio.account_sid, config.twilio.auth_token) == ("AC0123", SECRET)


def test_references_are_filled_at_any_depth_and_inside_text() -> None:
    data = {
        "publicUrl": "https://${HOST}/voice/webhook",
        "numbers": {"+15550009999": {"inboundGreeting": "Hi from ${SHOP}", "agentId": "${AGENT}"}},
        "tts": {"providers": {"openai": {"apiKey": {"source": "env", "id": "TTS_KEY"}}}},
        "responder": {"provider": "hook", "url": "https://hook.example/turn",
                      "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}},
        "mock": {"replies": ["${LINE}", "plain"]},
    }  # fmt: skip
    env = {
        "HOST": "me.ngrok.app",
        "SHOP": "Acme",
        "AGENT": "ops",
        "TTS_KEY": "sk-tts",
        "HOOK_TOKEN": "hook-secret",
        "LINE": "Hello there",
    }
    config = parse_config(data, env=env)
    assert config.public_url == "https://me.ngrok.app/voice/webhook"
    route = config.numbers["+15550009999"]
    assert (route.inbound_greeting, route.agent_id) == ("Hi from Acme", "ops")
    assert config.responder.headers == {"Authorization": "Bearer hook-secret"}
    assert config.mock.replies == ["Hello there", "plain"]
    assert "sk-tts" in json.dumps(config.model_dump(mode="json"))


def test_double_dollar_is_a_literal_and_other_dollars_are_text() -> None:
    text = "It costs $5, not $${PRICE}, ${price} or ${ not a name}"
    config = parse_config({"inboundGreeting": text}, env={"PRICE": "9", "price": "9"})
    assert config.inbound_greeting == "It costs $5, not ${PRICE}, ${price} or ${ not a name}"


def test_a_whole_reference_fills_a_number_or_true_false_field() -> None:
    data = {"serve": {"port": "${PORT}"}, "skipSignatureVerification": "${SKIP}"}
    config = parse_config(data, env={"PORT": "4001", "SKIP": "true"})
    assert config.serve.port == 4001 and config.skip_signature_verification is True
    [error] = errors_of({"serve": {"port": "${PORT}"}}, env={"PORT": "http"})
    assert error.startswith("serve.port (from ${PORT}): expected a whole number")


def test_an_unset_variable_names_the_key_and_the_variable() -> None:
    errors = errors_of(TWILIO_BY_REFERENCE, env={"FROM_NUMBER": "+15550001234", "TOKEN": " "})
    assert errors == [
        "twilio.accountSid: ${SID} is not set — set SID in the environment or write the value",
        "twilio.authToken: ${TOKEN} is not set — set TOKEN in the environment or write the value",
    ]
    [embedded] = errors_of({"publicUrl": "https://${HOST}/voice/webhook"}, env={})
    assert embedded.startswith("publicUrl: ${HOST} is not set — set HOST in the environment")


def test_only_environment_secret_references_are_read() -> None:
    errors = errors_of(
        {
            "openaiApiKey": {"source": "file", "provider": "vault", "id": "/openai"},
            "elevenlabsApiKey": {"source": "env", "provider": "corp", "id": "XI"},
            "tunnel": {"ngrokAuthToken": {"source": "env", "id": "lower_case"}},
        },
        env={"XI": "x"},
    )
    assert errors == [  # in file order
        'openaiApiKey: secret source "file" is not supported here'
        ' — use {source: "env", id: "NAME"} or write the value',
        'elevenlabsApiKey: secret provider "corp" is not supported here'
        ' — leave provider out (or write "default") to read the environment',
        'tunnel.ngrokAuthToken: id "lower_case" is not an environment variable name'
        ' — write it in capitals, e.g. "TWILIO_AUTH_TOKEN"',
    ]


def test_openclaw_file_references_fill_our_section_and_messages_tts() -> None:
    data = {
        "messages": {"tts": {"providers": {"openai": {"apiKey": "${OPENAI_KEY}"}}}},
        "plugins": {"entries": {"voice-call": {"config": {"toNumber": "${TO}"}}}},
    }
    config = parse_config(data, env={"OPENAI_KEY": "sk-core", "TO": "+15550002222"})
    assert config.to_number == "+15550002222"
    assert config.core_tts == {"providers": {"openai": {"apiKey": "sk-core"}}}
    errors = errors_of(data, env={})
    assert errors == [
        'plugins.entries["voice-call"].config.toNumber: ${TO} is not set'
        " — set TO in the environment or write the value",
        "messages.tts.providers.openai.apiKey: ${OPENAI_KEY} is not set"
        " — set OPENAI_KEY in the environment or write the value",
    ]


def test_substituted_values_are_never_printed() -> None:
    data = {
        **TWILIO_BY_REFERENCE,
        "publicUrl": "https://${HOST}/voice/webhook?k=${URL_KEY}",
        "inboundGreeting": "${SECRET_GREETING}",
    }
    env = {**ENV, "HOST": "me.example", "URL_KEY": "url-key-42", "SECRET_GREETING": "pin 9981"}
    text = json.dumps(redacted(parse_config(data, env=env)))
    for value in (SECRET, "AC0123", "url-key-42", "pin 9981"):
        assert value not in text
    assert '"publicUrl": "https://${HOST}/voice/webhook?k=${URL_KEY}"' in text
    assert '"accountSid": "${SID}"' in text
    # an error about a substituted value shows the reference, not the value
    [error] = errors_of({"tunnel": {"provider": "${TUNNEL}"}}, env={"TUNNEL": "sk-live-secret"})
    assert "sk-live-secret" not in error and error.startswith("tunnel.provider (from ${TUNNEL}):")


def test_parse_config_leaves_its_input_alone() -> None:
    before = json.dumps(TWILIO_BY_REFERENCE)
    parse_config(TWILIO_BY_REFERENCE, env=ENV)
    errors_of({**TWILIO_BY_REFERENCE, "openaiApiKey": {"source": "exec", "id": "x"}}, env=ENV)
    assert json.dumps(TWILIO_BY_REFERENCE) == before


def test_load_config_reads_references_from_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "c.json5"
    path.write_text('{ toNumber: "${VC_TEST_TO}" }')
    monkeypatch.setenv("VC_TEST_TO", "+15550003333")
    assert load_config(path).to_number == "+15550003333"


def test_config_check_with_the_variable_set_and_unset(tmp_path: Path) -> None:
    config = write_config(tmp_path / "refs.json5", TWILIO_BY_REFERENCE)
    env = base_env(tmp_path)
    done = Cli({**env, **ENV}, config).run("config", "check")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr and "AC0123" not in done.stdout
    shown = json.loads(done.stdout.split("\n", 1)[1])
    assert shown["fromNumber"] == "${FROM_NUMBER}" and shown["twilio"]["authToken"] == "***"
    missing = Cli({**env, "FROM_NUMBER": "+15550001234", "SID": "AC0123"}, config)
    done = missing.run("config", "check")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[1:] == [
        "  twilio.authToken: ${TOKEN} is not set — set TOKEN in the environment or write the value"
    ]


def test_the_readme_example_loads_with_its_variables_set() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("**Values from the environment**", 1)[1]
    match = re.search(r"```json5\n(.*?)```", section, re.S)
    assert match, "no json5 block after 'Values from the environment' in README.md"
    env = {"TWILIO_FROM": "+15550001234", "TWILIO_SID": "AC0123", "TWILIO_TOKEN": SECRET}
    config = parse_config(json5.loads(match.group(1)), env=env)
    assert config.twilio is not None and config.twilio.auth_token == SECRET
    [error] = errors_of(json5.loads(match.group(1)), env={**env, "TWILIO_TOKEN": ""})
    assert error == (
        "twilio.authToken: ${TWILIO_TOKEN} is not set"
        " — set TWILIO_TOKEN in the environment or write the value"
    )
