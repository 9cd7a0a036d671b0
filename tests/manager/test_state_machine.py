"""Property tests: the call state machine only moves forward and a terminal state is final."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.manager.stack import harness
from voice_call.models import (
    LIVE_STATES,
    TERMINAL_STATES,
    CallEvent,
    CallState,
    EventType,
    Mode,
    can_transition,
)

ORDER = ["initiated", "ringing", "answered", "active", "speaking", "listening"]


def rank(state: CallState) -> int:
    return min(ORDER.index(state.value), 4) if state.value in ORDER else 99


@given(st.sampled_from(list(CallState)), st.sampled_from(list(CallState)))
def test_transition_rule(current: CallState, target: CallState) -> None:
    allowed = can_transition(current, target)
    if current in TERMINAL_STATES or current == target:
        assert not allowed
    elif target in TERMINAL_STATES:
        assert allowed
    else:
        assert allowed == (rank(target) >= rank(current))


def test_state_sets_partition() -> None:
    assert not TERMINAL_STATES & LIVE_STATES
    assert len(TERMINAL_STATES) == 9 and len(LIVE_STATES) == 4


events = st.lists(
    st.builds(
        CallEvent,
        type=st.sampled_from(list(EventType)),
        transcript=st.one_of(st.none(), st.text(max_size=20)),
        is_final=st.booleans(),
        reason=st.one_of(st.none(), st.sampled_from(sorted(TERMINAL_STATES))),
        dedupe_key=st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"])),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
async def test_random_event_sequences_never_go_backwards(sequence: list[CallEvent]) -> None:
    with tempfile.TemporaryDirectory() as home:
        async with harness(Path(home), {"mock": {"silent": True, "answerDelayMs": 10**9}}) as h:
            call = await h.manager.initiate(to=None, message="hi", mode=Mode.CONVERSATION)
            seen: list[CallState] = []
            for event in sequence:
                await h.manager.handle_event(event.model_copy(update={"call_id": call.call_id}))
                rec = await h.store.get(call.call_id)
                assert rec is not None
                seen.append(rec.state)
            for before, after in itertools.pairwise(seen):
                if before in TERMINAL_STATES:
                    assert after == before
                elif after not in TERMINAL_STATES and {before, after} != {
                    CallState.SPEAKING,
                    CallState.LISTENING,
                }:
                    assert rank(after) >= rank(before)
            # replaying everything changes nothing
            snapshot = await h.store.get(call.call_id)
            seq = await h.store.last_seq()
            keyed = [e for e in sequence if e.dedupe_key]
            for event in keyed:
                outcome = await h.manager.handle_event(
                    event.model_copy(update={"call_id": call.call_id})
                )
                assert outcome == "duplicate"
            assert await h.store.get(call.call_id) == snapshot
            assert await h.store.last_seq() == seq
