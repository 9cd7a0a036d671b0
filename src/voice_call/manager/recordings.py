"""`call.recording` on the record: `metadata["recording"]`, kept after the call has ended.

A recording is finished after the call is (the carrier's file once it is processed, our local
WAV once the stream is closed), so unlike other events it is applied to an ended call too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from voice_call.config import Config
from voice_call.models import CallEvent, CallRecord, EventType
from voice_call.providers.base import Provider, Recordings

LOCAL = "local"  # recording_status of the stream's own dual-channel WAV


def apply_recording(rec: CallRecord, event: CallEvent) -> str:
    """Merge what the event says into `metadata["recording"]` (the local WAV under "local")."""
    fields: dict[str, Any] = {
        "url": event.recording_url,
        "path": event.recording_path,
        "durationS": event.recording_duration_s,
        "status": event.recording_status,
    }
    said = {key: value for key, value in fields.items() if value is not None}
    current = rec.metadata.get("recording")
    recording: dict[str, Any] = dict(current) if isinstance(current, dict) else {}
    if event.recording_status == LOCAL:
        said.pop("status")
        recording[LOCAL] = said
    else:
        recording.update(said)
    rec.metadata["recording"] = recording
    return "applied"


def wanted(config: Config, rec: CallRecord) -> bool:
    """The call's own `record` (initiate) over `recording.enabled`."""
    own = rec.metadata.get("record")
    return own if isinstance(own, bool) else config.recording.enabled


class CallRecordings:
    """Starting the carrier's recording once a call is answered, and fetching its file.

    `announce` (a consent line: "this call is recorded") is said as the call's first words, in
    one utterance with its greeting: a carrier whose next speech replaces the current one
    cannot cut it short. The recording runs from the answer, so the notice is on it too.
    Failures are logged on the call, never end it.
    """

    def __init__(self, config: Config, provider: Provider, folder: Path | None) -> None:
        self.config = config
        self.provider = provider
        self.folder = folder

    async def start(self, rec: CallRecord) -> None:
        if wanted(self.config, rec) and isinstance(self.provider, Recordings):
            await self.provider.start_recording(rec, self.config.recording.channels)

    def with_consent(self, rec: CallRecord, greeting: str) -> str:
        announce = self.config.recording.announce
        if not announce or not wanted(self.config, rec):
            return greeting
        return f"{announce.strip()} {greeting}"

    def download_wanted(self, event: CallEvent) -> bool:
        return (
            self.config.recording.download
            and self.folder is not None
            and event.recording_url is not None
            and event.recording_status in (None, "completed")
            and isinstance(self.provider, Recordings)
        )

    async def download(self, call_id: str, url: str) -> CallEvent:
        """The carrier's file into the state folder; the `call.recording` event saying where."""
        assert self.folder is not None and isinstance(self.provider, Recordings)
        audio, extension = await self.provider.fetch_recording(url)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        path = self.folder / f"{call_id}-{digest}.{extension}"
        path.write_bytes(audio)
        path.chmod(0o600)  # a recording is personal data
        return CallEvent(
            call_id=call_id,
            type=EventType.RECORDING,
            recording_path=str(path),
            dedupe_key=f"recording-download:{call_id}:{digest}",
        )
