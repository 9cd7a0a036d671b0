"""The media tap: frames both ways with their 20 ms slots, only while someone listens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from tests.media.carrier import loud_frames
from tests.media.stack import SessionHarness, registry
from voice_call.media.stream_protocols import Media
from voice_call.media.tap import MediaTap


@dataclass
class Heard:
    frames: list[tuple[str, int, bytes]] = field(default_factory=list)
    closed: int = 0

    def frame(self, side: str, slot: int, ulaw: bytes) -> None:
        self.frames.append((side, slot, ulaw))

    def close(self) -> None:
        self.closed += 1


def test_caller_frames_follow_each_other_and_resync_after_a_gap() -> None:
    now = [100.0]
    tap = MediaTap(now=lambda: now[0])
    heard = Heard()
    tap.add(heard)
    now[0] = 100.050  # first frame arrives in slot 2
    tap.inbound(b"a")
    now[0] = 100.095  # jitter: a burst of two still goes one after the other
    tap.inbound(b"b")
    tap.inbound(b"c")
    now[0] = 101.0  # a gap of more than 200 ms: back on the clock (slot 50)
    tap.inbound(b"d")
    tap.outbound(b"x", due=100.0401)  # ours land where they were due
    assert heard.frames == [
        ("caller", 2, b"a"),
        ("caller", 3, b"b"),
        ("caller", 4, b"c"),
        ("caller", 50, b"d"),
        ("bot", 2, b"x"),
    ]


def test_a_failing_listener_is_removed_and_the_others_still_hear() -> None:
    tap = MediaTap(now=lambda: 0.0)

    class Broken(Heard):
        def frame(self, side: str, slot: int, ulaw: bytes) -> None:
            raise RuntimeError("boom")

    broken, heard = Broken(), Heard()
    tap.add(broken)
    tap.add(heard)
    tap.inbound(b"a")
    tap.inbound(b"b")
    assert broken.closed == 1 and tap.listeners == [heard] and len(heard.frames) == 2


async def test_session_frames_reach_listeners_only_while_they_listen() -> None:
    media, _, _ = registry()
    harness = SessionHarness()
    session = harness.session
    media.register(session)
    assert session.tap is None  # nobody listens: nothing per frame beyond the check
    heard = Heard()
    assert media.listen("call-1", heard) and session.tap is not None
    session.handle(Media(payload=loud_frames(1)[0]))
    await asyncio.wait_for(session.speak("Hi there."), 5)
    sides = {side for side, _, _ in heard.frames}
    assert sides == {"caller", "bot"}
    bot_slots = [slot for side, slot, _ in heard.frames if side == "bot"]
    assert bot_slots == sorted(bot_slots) and len(set(bot_slots)) == len(bot_slots)
    media.unlisten("call-1", heard)
    assert session.tap is None and heard.closed == 1
    assert not media.listen("no-such-call", Heard())
    await harness.close()
    await media.close()
