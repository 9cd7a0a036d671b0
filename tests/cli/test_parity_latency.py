"""`voicecall latency`: the `--last` default and the JSON shape are what README.md and
`latency --help` say they are."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.cli.test_latency import fill, run
from voice_call.cli.latency import COMPONENTS
from voice_call.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"
STATS = {"count", "p50", "p95", "p99", "min", "max", "mean"}
WIRE_NAMES = {wire for _, wire, _ in COMPONENTS}


def documented_example() -> dict[str, Any]:
    """The README's ```json block that shows `latency --json` (the one with callsScanned)."""
    blocks = re.findall(r"^```json\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
    [example] = [b for b in blocks if '"callsScanned"' in b]
    data: dict[str, Any] = json.loads(example)
    return data


def shape(data: dict[str, Any]) -> tuple[set[str], set[str], set[frozenset[str]]]:
    components = data["components"]
    return set(data), set(components), {frozenset(v) for v in components.values()}


def test_the_json_has_the_documented_shape(tmp_path: Path) -> None:
    home = tmp_path / "state"
    asyncio.run(fill(home))
    code, out, _ = run(home, "latency", "--json")
    assert code == 0
    actual = json.loads(out)
    doc_top, doc_names, doc_stats = shape(documented_example())
    top, names, stats = shape(actual)
    assert top == doc_top == {"callsScanned", "turns", "replies", "components"}
    assert doc_stats == stats == {frozenset(STATS)}
    assert doc_names <= WIRE_NAMES and names <= WIRE_NAMES
    readme = README.read_text(encoding="utf-8")
    for name in WIRE_NAMES:  # every component the command can print is named in the docs
        assert f"`{name}`" in readme, name
    assert "`--last` N most recent turns (default 200)" in readme


def test_help_states_the_default_and_the_shape() -> None:
    result = CliRunner().invoke(cli, ["latency", "--help"], env={"VOICECALL_CONFIG": ""})
    assert result.exit_code == 0
    help_text = result.stdout
    assert (
        "--last N" in help_text
        and "[default: 200;" in help_text
        and "max(N, 50)" in " ".join(help_text.split())
    )
    for key in ("callsScanned", "turns", "replies", "components", *STATS, *WIRE_NAMES):
        assert re.search(rf"\b{key}\b", help_text), key
