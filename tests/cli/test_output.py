"""The call printout's latency table: the columns a call's turns actually measured."""

from __future__ import annotations

from rich.console import Console

from voice_call.cli.output import latency_table
from voice_call.models import TurnKind, TurnLatency


def render(turns: list[TurnLatency]) -> str:
    console = Console(width=200, record=True)
    console.print(latency_table(turn.wire() for turn in turns))
    return console.export_text()


def test_a_streamed_reply_turn_shows_its_audio_path_figures() -> None:
    reply = TurnLatency(
        turn=1,
        kind=TurnKind.REPLY,
        total_ms=812.4,
        endpointing_ms=311.0,
        responder_first_token_ms=55.2,
        tts_first_byte_ms=45.9,
        voice_to_voice_ms=424.7,
        outcome="spoken",
    )
    text = render([reply])
    for header in ("Endpointing", "First token", "TTS first byte", "Voice-to-voice", "Outcome"):
        assert header in text
    assert "Listen wait" not in text and "Speak " not in text  # nothing measured them
    row = next(line for line in text.splitlines() if line.strip().startswith("1"))
    cells = [cell for cell in row.split() if cell != "│"]
    assert cells == ["1", "reply", "311", "55", "46", "425", "812", "spoken"]


def test_continue_turns_keep_their_speak_and_listen_columns() -> None:
    turn = TurnLatency(
        turn=2, kind=TurnKind.CONTINUE, total_ms=900, speak_ms=12, listen_wait_ms=870
    )
    text = render([turn])
    assert "Speak" in text and "Listen wait" in text and "Endpointing" not in text
    row = next(line for line in text.splitlines() if line.strip().startswith("2"))
    assert [cell for cell in row.split() if cell != "│"] == ["2", "continue", "12", "870", "900"]
