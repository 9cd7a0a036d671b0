"""Cartesia Sonic text-to-speech over its WebSocket (`wss://api.cartesia.ai/tts/websocket`).

One socket per engine, opened ahead (`warm`) and shared by every call: requests multiplex on
it by `context_id`, so a sentence pays no connection setup. Audio is asked for as raw µ-law at
8 kHz (`pcm_mulaw`), what the phone line plays, so nothing is resampled.

A reply's sentences go into one context (playback names the reply: base.REPLY_PART), so
prosody carries across their boundaries: each sentence but the last is sent with `continue:
true` and then flushed (its audio ends at `flush_done`), the last with `continue: false` (its
audio ends at `done`). Playback needs each sentence's audio to end where it does, to know how
much of a reply the caller heard. Text with no reply around it is a context of its own. A
sentence given up mid-way (barge-in, a timeout) cancels its context; an error ends it, and the
reply's next sentence starts a fresh one. A lost socket fails the sentences waiting on it; the
next sentence opens a new one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from voice_call.audio.g711 import SAMPLE_RATE
from voice_call.speech.tts.base import REPLY_PART, ReplyPart, TtsAudio, TtsError, TtsUnavailable
from voice_call.speech.tts.settings import option

DEFAULT_URL = "wss://api.cartesia.ai/tts/websocket"
DEFAULT_MODEL = "sonic-2"
DEFAULT_VOICE_ID = "a0e99841-438c-4a64-b679-ae501e7d6091"  # "Barbershop Man", Cartesia's docs
DEFAULT_VERSION = "2025-04-16"
OUTPUT_FORMAT = {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": SAMPLE_RATE}
OPEN_REPLIES = 256  # replies given up between sentences leave their context id behind
CLOSED = "socket closed"  # our own marker on a context's queue


class CartesiaTts:
    name = "cartesia"

    def __init__(self, options: Mapping[str, Any], *, timeout_s: float = 8.0) -> None:
        api_key = option(options, "cartesia", "apiKey", str)
        if not api_key:
            raise TtsUnavailable(
                "tts: Cartesia needs an API key — set cartesiaApiKey (or CARTESIA_API_KEY),"
                " or tts.providers.cartesia.apiKey"
            )
        self.url = option(options, "cartesia", "url", str, DEFAULT_URL)
        self.model_id = option(options, "cartesia", "modelId", str, DEFAULT_MODEL)
        self.voice_id = option(options, "cartesia", "voiceId", str, DEFAULT_VOICE_ID)
        self.language = option(options, "cartesia", "language", str, "en")
        version = option(options, "cartesia", "version", str, DEFAULT_VERSION)
        self._headers = {"X-API-Key": api_key, "Cartesia-Version": version}
        self.connect_timeout_s = min(timeout_s, 5.0)
        self._ws: ClientConnection | None = None
        self._connecting: asyncio.Task[ClientConnection] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._contexts: dict[str, asyncio.Queue[dict[str, Any]]] = {}  # id → its messages
        self._replies: OrderedDict[str, str] = OrderedDict()  # reply id → its context id
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ the socket

    async def _socket(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        if self._closed:
            raise TtsError("Cartesia engine is closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> ClientConnection:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    proxy=None,
                    compression=None,
                    max_size=1 << 22,
                    open_timeout=None,
                )
        except TimeoutError:
            raise TtsError(f"Cartesia did not answer within {self.connect_timeout_s:g} s") from None
        except InvalidStatus as exc:
            body = exc.response.body.decode(errors="replace")[:300] if exc.response.body else ""
            raise TtsError(
                f"Cartesia refused: HTTP {exc.response.status_code} {body}".rstrip()
            ) from None
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            raise TtsError(f"cannot reach Cartesia: {type(exc).__name__}: {exc}") from None
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws))
        return ws

    async def _read(self, ws: ClientConnection) -> None:
        """Hand each message to its context; when the socket goes, fail those waiting."""
        try:
            async for raw in ws:
                message = _message(raw)
                queue = self._contexts.get(str(message.get("context_id")))
                if queue is not None:
                    queue.put_nowait(message)
                elif message.get("type") == "error":  # about no context we know: all fail
                    for waiting in self._contexts.values():
                        waiting.put_nowait(message)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            gone = {"type": CLOSED, "code": ws.close_code, "reason": ws.close_reason}
            for queue in self._contexts.values():
                queue.put_nowait(gone)

    async def _send(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        try:
            await ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise TtsError(f"Cartesia closed the connection ({exc})") from None

    # ------------------------------------------------------------------ synthesis

    def _context_for(self, part: ReplyPart | None) -> str:
        if part is None:
            return uuid.uuid4().hex
        context = self._replies.get(part.reply_id)
        if context is None:
            context = self._replies[part.reply_id] = uuid.uuid4().hex
            while len(self._replies) > OPEN_REPLIES:
                self._replies.popitem(last=False)
        return context

    def _request(self, context: str, transcript: str, more: bool) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "transcript": transcript,
            "voice": {"mode": "id", "id": self.voice_id},
            "language": self.language,
            "context_id": context,
            "output_format": OUTPUT_FORMAT,
            "continue": more,
        }

    async def synthesize(self, text: str) -> AsyncGenerator[TtsAudio, None]:
        part = REPLY_PART.get()
        more = part is not None and not part.last
        context = self._context_for(part)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._contexts[context] = queue
        ended = clean = False  # the context is over / this sentence's audio all came
        try:
            ws = await self._socket()
            # transcripts of one context are joined verbatim: the space keeps words apart
            await self._send(ws, self._request(context, text + (" " if more else ""), more))
            if more:
                await self._send(ws, {**self._request(context, "", True), "flush": True})
            while True:
                message = await queue.get()
                kind = message.get("type")
                if kind == "chunk":
                    audio = _audio(message)
                    if audio:
                        yield TtsAudio(audio, SAMPLE_RATE, "ulaw")
                elif kind in ("flush_done", "done"):
                    clean, ended = True, kind == "done"
                    return
                elif kind == "error":
                    ended = True  # the service ended the context itself
                    raise TtsError(f"Cartesia refused: {_error(message)}")
                elif kind == CLOSED:
                    ended = True
                    raise TtsError(f"Cartesia closed the connection (code {message.get('code')})")
        finally:
            self._contexts.pop(context, None)
            if part is not None and not (more and clean):  # the reply's next sentence: anew
                self._replies.pop(part.reply_id, None)
            if not (ended or clean):
                self._cancel(context)

    def _cancel(self, context: str) -> None:
        """Stop the context's generation (fire and forget: we may be being cancelled)."""
        ws = self._ws
        if ws is None:
            return
        task = asyncio.get_running_loop().create_task(self._send_quietly(ws, context))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_quietly(self, ws: ClientConnection, context: str) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await ws.send(json.dumps({"context_id": context, "cancel": True}))

    async def warm(self) -> None:
        with contextlib.suppress(TtsError):
            await self._socket()

    async def close(self) -> None:
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await asyncio.wait_for(ws.close(), 2)
        tasks = [t for t in (self._connecting, self._reader, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _message(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return message if isinstance(message, dict) else {}


def _audio(message: dict[str, Any]) -> bytes:
    data = message.get("data")
    if not isinstance(data, str):
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise TtsError("Cartesia sent audio that is not base64") from None


def _error(message: dict[str, Any]) -> str:
    error = message.get("error") or message.get("message") or message.get("title")
    status = message.get("status_code")
    text = str(error)[:300] if error else "unknown error"
    return f"{text} (status {status})" if status else text
