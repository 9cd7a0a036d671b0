"""`voicecall` in Traditional Chinese (cli/i18n.py, src/voice_call/locale): the language comes
from `--lang` or the locale variables, English stays the default, `--json` is never
translated, and the catalog matches the strings of the modules listed in babel.cfg."""

from __future__ import annotations

import gettext
import json
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tests.cli.stack import Cli, base_env, write_config
from voice_call.cli import i18n

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "src" / "voice_call" / "locale" / "zh_TW" / "LC_MESSAGES"

# Common Simplified-only forms: a Traditional catalog must contain none of them.
SIMPLIFIED = set("设对这个说话为时间请进过还没们来电号码务错误认证连线应显态删启关开调检")
BAD = {"serve": {"port": -1}, "provider": "twillio", "fromNumbr": "+15550001111"}


def english_env(tmp_path: Path) -> dict[str, str]:
    env = base_env(tmp_path)
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        env.pop(name, None)
    env["LANG"] = "C.UTF-8"
    return env


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LANG", "zh_TW.UTF-8"), ("LC_MESSAGES", "zh_TW.UTF-8"), ("LC_ALL", "zh_Hant_TW.UTF-8")],
)
def test_locale_variables_choose_traditional_chinese(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = english_env(tmp_path) | {variable: value}
    done = Cli(env, None).run("--help")
    assert done.returncode == 0, done.stderr
    assert "替 AI 代理撥打並控制電話" in done.stdout
    assert "撥出一通電話。" in done.stdout  # the command table
    assert "輸出機器可讀的 JSON。" in done.stdout  # option help
    assert "Place an outbound call." not in done.stdout


def test_lc_all_wins_over_lang(tmp_path: Path) -> None:
    env = english_env(tmp_path) | {"LANG": "zh_TW.UTF-8", "LC_ALL": "en_US.UTF-8"}
    assert "Place an outbound call." in Cli(env, None).run("--help").stdout


def test_english_is_the_default(tmp_path: Path) -> None:
    done = Cli(english_env(tmp_path), None).run("--help")
    assert "Place and control phone calls for AI agents" in done.stdout
    assert "--lang [en|zh-TW]" in done.stdout


def test_lang_option_beats_the_environment(tmp_path: Path) -> None:
    env = english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}
    assert "Place an outbound call." in Cli(env, None).run("--lang", "en", "--help").stdout
    zh = Cli(english_env(tmp_path), None).run("--lang", "zh-TW", "config", "--help")
    assert "檢視設定。" in zh.stdout


def test_bad_config_errors_read_in_traditional_chinese(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.json5", BAD)
    done = Cli(english_env(tmp_path), config).run("--lang", "zh-TW", "config", "check")
    assert done.returncode == 2
    assert f"錯誤：{config} 中的設定無效：" in done.stderr
    assert "serve.port: 至少必須是 0，卻是 -1 — 請改用較大的數字" in done.stderr
    assert '— 您是指 "twilio" 嗎？' in done.stderr
    assert "fromNumbr: 未知的鍵 — 請移除，或檢查拼字（您是指 'fromNumber' 嗎？）" in done.stderr


def test_bad_config_errors_stay_english_by_default(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.json5", BAD)
    done = Cli(english_env(tmp_path), config).run("config", "check")
    assert f"Error: invalid config in {config}:" in done.stderr
    assert "serve.port: must be at least 0, got -1 — use a larger number" in done.stderr


def test_setup_checks_read_in_traditional_chinese(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.json5", BAD)
    env = english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}
    bad = Cli(env, config).run("setup").stdout
    assert f"FAIL config: {config} 中的設定無效：serve.port: 至少必須是 0" in bad
    assert "SKIP responder: 需要有效的設定" in bad
    good = Cli(env, write_config(tmp_path / "ok.json5", {})).run("setup").stdout
    assert "OK provider-credentials: 模擬電信商不需要憑證" in good
    assert "OK responder: none：對話由 `voicecall continue` 推動" in good


@pytest.mark.parametrize("data", [BAD, {"serve": {"port": 4100}}])
@pytest.mark.parametrize("command", [("config", "check"), ("setup",)])
def test_json_output_is_never_translated(
    tmp_path: Path, data: dict[str, object], command: tuple[str, ...]
) -> None:
    config = write_config(tmp_path / "c.json5", data)
    en = Cli(english_env(tmp_path), config).run("--json", *command)
    zh = Cli(english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}, config).run(
        "--lang", "zh-TW", "--json", *command
    )
    assert zh.stdout == en.stdout and zh.returncode == en.returncode
    json.loads(en.stdout)


def test_demo_narrates_in_traditional_chinese(tmp_path: Path) -> None:
    env = english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}
    done = Cli(env, None).run("demo", timeout=60)
    assert done.returncode == 0, done.stderr
    for line in ("響鈴中…", "已接聽", "機器人：", "對方：", "最終通話紀錄", "每輪延遲（毫秒）"):
        assert line in done.stdout, line
    assert "Final call record" not in done.stdout


def test_lang_is_restored_after_an_in_process_invocation() -> None:
    from click.testing import CliRunner

    from voice_call.cli.main import cli

    before = i18n.current()
    CliRunner().invoke(cli, ["--lang", "zh-TW", "tool-schema"])
    assert i18n.current() == before


def test_an_unknown_lang_is_refused(tmp_path: Path) -> None:
    done = Cli(english_env(tmp_path), None).run("--lang", "fr", "--help")
    assert done.returncode == 2 and "--lang" in done.stderr


# --- the catalog --------------------------------------------------------------------------


def extracted_msgids() -> set[str]:
    method_map, options_map = parse_mapping_cfg((ROOT / "babel.cfg").open())
    found = extract_from_dir(str(ROOT / "src"), method_map, options_map)
    return {message if isinstance(message, str) else message[0] for *_, message, _c, _x in found}


def catalog() -> dict[str, str]:
    with (LOCALE / "voice_call.po").open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id and isinstance(m.id, str)}


def test_every_wrapped_string_is_in_the_catalog_and_none_is_stale() -> None:
    wanted, have = extracted_msgids(), set(catalog())
    assert wanted, "babel.cfg lists no strings"
    assert sorted(wanted - have) == [], "missing from voice_call.po: run the pybabel steps"
    assert sorted(have - wanted) == [], "stale entries in voice_call.po"


def test_every_translation_is_traditional_and_keeps_its_placeholders() -> None:
    import re

    for msgid, msgstr in catalog().items():
        assert msgstr.strip(), f"untranslated: {msgid!r}"
        simplified = SIMPLIFIED & set(msgstr)
        assert not simplified, f"Simplified forms {simplified} in {msgstr!r}"
        fields = sorted(re.findall(r"\{\w*\}|`[^`]*`|%s", msgid))
        assert sorted(re.findall(r"\{\w*\}|`[^`]*`|%s", msgstr)) == fields, msgid


def test_compiled_catalog_matches_the_source() -> None:
    with (LOCALE / "voice_call.mo").open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    for msgid, msgstr in catalog().items():
        assert compiled.gettext(msgid) == msgstr, f"voice_call.mo is stale: {msgid!r}"
    assert len(compiled._catalog) == len(catalog()) + 1  # type: ignore[attr-defined]  # + header


# --- the commands wrapped later: serve, sim, expose, latency, mcp, console, tail, demo --realtime


def test_serve_and_expose_help_read_in_traditional_chinese(tmp_path: Path) -> None:
    env = english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}
    serve = Cli(env, None).run("serve", "--help").stdout
    assert "執行 webhook、JSON-RPC 與事件伺服器（按 Ctrl-C 停止）。" in serve
    assert "要監聽的位址。預設：serve.bind。" in serve
    assert "Run the webhook" not in serve
    expose = Cli(env, None).run("expose", "--help").stdout
    assert "funnel：公開；serve：僅限您的 tailnet；off：移除路由。" in expose


def test_sim_help_and_errors_read_in_traditional_chinese(tmp_path: Path) -> None:
    cli = Cli(english_env(tmp_path), None)
    help_text = cli.run("--lang", "zh-TW", "sim", "--help").stdout
    assert "在本機迴路上執行 Twilio、Telnyx 或 Plivo 模擬器（離線開發用）。" in help_text
    assert "對方要說的一句話（可重複指定）。" in help_text
    done = cli.run("--lang", "zh-TW", "sim", "twilio", "--from", "+15550001111")
    assert done.returncode == 2
    assert "錯誤：--from 是給 call-in 用的：`voicecall sim twilio call-in --from …`" in done.stderr
    english = cli.run("sim", "twilio", "--from", "+15550001111").stderr
    assert "Error: --from is for call-in: `voicecall sim twilio call-in --from …`" in english


def test_latency_reads_in_traditional_chinese_and_keeps_json_english(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json5", {})
    zh = Cli(english_env(tmp_path) | {"LANG": "zh_TW.UTF-8"}, config).run("latency")
    assert zh.returncode == 0, zh.stderr
    assert "尚無通話儲存區。" in zh.stderr
    assert "來自 0 通通話的 0 輪，單位為毫秒：" in zh.stdout
    assert "尚未記錄任何每輪延遲。" in zh.stdout
    en_json = Cli(english_env(tmp_path), config).run("--json", "latency").stdout
    zh_json = Cli(english_env(tmp_path), config).run("--lang", "zh-TW", "--json", "latency")
    assert zh_json.stdout == en_json and json.loads(en_json)["turns"] == 0


def test_latency_table_aligns_wide_characters() -> None:
    import unicodedata

    from voice_call.cli.latency import render

    def columns(line: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)

    row = {"count": 3, "p50": 1.0, "p95": 2.0, "p99": 3.0, "min": 1.0, "max": 3.0, "mean": 2.0}
    data = {"turns": 3, "callsScanned": 1, "components": {"voiceToVoiceMs": row, "totalMs": row}}
    previous = i18n.activate("zh_TW")
    try:
        table = render(data).splitlines()[1:]
    finally:
        i18n.activate(previous)
    assert table[0].startswith("項目") and "語音到語音（回覆）" in table[2]
    assert {columns(line) for line in table} == {73}
