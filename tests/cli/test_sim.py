"""`voicecall sim <carrier>` runs an emulator a config can point at, until stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

REST_PROBES = {
    "twilio": "/2010-04-01/Accounts/{sid}/Calls.json",
    "telnyx": "/v2/calls",
    "plivo": "/v1/Account/{sid}/Call/",
}


@pytest.mark.parametrize("carrier", sorted(REST_PROBES))
def test_sim_prints_its_config_and_guards_its_api(carrier: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "voice_call.cli", "sim", carrier, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        block = info["config"][carrier]
        assert info["config"]["provider"] == carrier and block["apiBaseUrl"] == info["url"]
        sid = block.get("accountSid") or block.get("authId") or ""
        path = REST_PROBES[carrier].format(sid=sid)
        # no credentials: the emulator answers as the carrier does, 401
        assert httpx.post(info["url"] + path, data={}, timeout=5).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
