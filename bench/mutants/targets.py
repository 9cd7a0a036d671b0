"""What `python -m bench mutants` mutates, which tests judge each file, and the mutants we judged
equivalent (no test can tell them from the original), each with the reason."""

from __future__ import annotations

from dataclasses import dataclass

MODULES = ("security", "manager", "store", "media-token")


@dataclass(frozen=True)
class Target:
    module: str  # one of MODULES
    path: str  # relative to the project root
    scopes: tuple[str, ...]  # qualified names mutated (a class takes its methods); () = all
    tests: tuple[str, ...]  # the test files run against each mutant, fastest first

    def covers(self, scope: str) -> bool:
        return not self.scopes or any(scope == s or scope.startswith(s + ".") for s in self.scopes)


_SIG = "src/voice_call/security/signatures"
_MANAGER = "src/voice_call/manager/manager.py"
_STATE_TESTS = (
    "tests/manager/test_transition_guard.py",
    "tests/manager/test_state_machine.py",
)
_DEDUPE_TESTS = ("tests/store/test_dedupe_guards.py", "tests/store/test_sqlite.py")
_MANAGER_DEDUPE_TESTS = (
    "tests/store/test_dedupe_guards.py",
    "tests/manager/test_transition_guard.py",
)
_MEDIA_TESTS = (
    "tests/media/test_media_token_path.py",
    "tests/media/test_stream_token_reuse.py",
    "tests/media/test_media_admission.py",
)

TARGETS: tuple[Target, ...] = (
    Target(
        "security",
        "src/voice_call/security/replay.py",
        (),
        ("tests/security/test_replay_bounds.py",),
    ),
    Target(
        "security",
        "src/voice_call/security/stream_tokens.py",
        (),
        ("tests/security/test_stream_token_mac.py", "tests/media/test_stream_tokens.py"),
    ),
    Target(
        "security",
        "src/voice_call/security/rpc_token.py",
        (),
        ("tests/security/test_rpc_token_file.py",),
    ),
    Target(
        "security",
        f"{_SIG}/twilio.py",
        (),
        (
            "tests/security/test_twilio_signature_edges.py",
            "tests/security/test_replay_keys.py",
            "tests/providers/twilio/test_security.py",
        ),
    ),
    Target(
        "security",
        f"{_SIG}/plivo.py",
        (),
        (
            "tests/security/test_plivo_signature_edges.py",
            "tests/security/test_replay_keys.py",
            "tests/sim/plivo/test_signature.py",
            "tests/providers/plivo/test_security.py",
        ),
    ),
    Target(
        "security",
        f"{_SIG}/telnyx.py",
        (),
        (
            "tests/security/test_telnyx_signature_edges.py",
            "tests/sim/telnyx/test_signature.py",
            "tests/providers/telnyx/test_security.py",
        ),
    ),
    Target(
        "manager",
        "src/voice_call/models.py",
        (
            "CallState.terminal",
            "CallState.live",
            "_RANK",
            "TERMINAL_STATES",
            "can_transition",
            "CallEvent._reason_is_terminal",
        ),
        _STATE_TESTS,
    ),
    Target(
        "manager",
        "src/voice_call/manager/records.py",
        ("move", "end_record", "require_live"),
        _STATE_TESTS,
    ),
    Target(
        "manager",
        _MANAGER,
        ("CallManager._apply", "CallManager._mutate", "CallManager.end", "CallManager._finish"),
        (*_STATE_TESTS, "tests/manager/test_manager.py"),
    ),
    Target(  # the dedupe key, and group commit: a save returns once committed, failing alone
        "store",
        "src/voice_call/store/sqlite.py",
        (
            "_insert_event",
            "SqliteStore.seen",
            "SqliteStore.save",
            "SqliteStore._commit_batch",
            "SqliteStore._commit_alone",
            "SqliteStore._apply_and_commit",
            "_apply",
        ),
        (*_DEDUPE_TESTS, "tests/store/test_group_commit.py"),
    ),
    Target(
        "store",
        "src/voice_call/store/group_commit.py",
        (),
        ("tests/store/test_group_commit.py",),
    ),
    Target(
        "store",
        _MANAGER,
        (
            "CallManager.handle_event",
            "CallManager._apply_to",
            "CallManager._accept_inbound",
            "CallManager._remember",
        ),
        _MANAGER_DEDUPE_TESTS,
    ),
    Target(
        "media-token",
        "src/voice_call/media/registry.py",
        (
            "MediaSessions.token",
            "MediaSessions.answer_stream",
            "MediaSessions.reserve",
            "MediaSessions.release",
            "MediaSessions.spend",
        ),
        _MEDIA_TESTS,
    ),
    Target(
        "media-token",
        "src/voice_call/server/media.py",
        (
            "MediaRoute._serve",
            "MediaRoute._spend",
            "MediaRoute._admit",
            "MediaRoute._call_named",
        ),
        _MEDIA_TESTS,
    ),
)

# Mutant key (see Mutant.key: path, scope, original → replacement) → why no test can kill it.
_TOKENS = "src/voice_call/security/stream_tokens.py"
_RPC = "src/voice_call/security/rpc_token.py"
_NO_VALID_TOKEN_IS_256 = (
    "the token pattern bounds a valid token to 218 characters (call 128, expiry 12, grant 32, "
    "signature 43, 3 dots): the length check only spares the regex a long input"
)
_TEMP_NAME = "the temporary file's name: any name unique to the process works as well"
_PLIVO = f"{_SIG}/plivo.py"
_ANY_DIGEST = (
    "the length guard only spares decoding: an empty or over-long header never decodes to the "
    "32-byte digest, so it fails the comparison either way"
)
_NOT_GET = "a default method: every method but GET is signed as a POST, the empty one too"
_ALTCHARS = (
    '`"" in text` is always true, so the URL-safe alphabet is always allowed: b64decode maps '
    "only - and _, so standard base64 decodes the same with it or without"
)
_LOG_WORDING = "names the action in a logged warning only (quiet=True): wording, not behaviour"
_FALLS_THROUGH = "the branches after it do not match this event: it returns 'applied' anyway"
# group commit: changes that cost a loop turn or a handle, or guard what asyncio rules out
_COST_ONLY_LONE = (
    "a lone save then opens a batch, and the joiner's check finds its flush next in the ready "
    "queue and commits at once: the same commit, one handle more"
)
_STALE_FLUSH = (
    "the flush left scheduled finds no batch, or commits the next one a loop turn early: "
    "every save's outcome is unchanged"
)
_DONE_FUTURE = "it falls through to awaiting the future, which is done: the same result, no yield"
_STRICT = "commit returns one outcome per write (its contract): zip never sees unequal lengths"
_SETTLED_FIRST = (
    "a cancelled save reaches _outlive only after its batch settled it: the flush is scheduled "
    "when the batch opens, before any of its tasks can be cancelled and woken, and asyncio runs "
    "ready callbacks in order, so the loop that waits for an unsettled batch never runs"
)
_SUPPRESS_ORDER = "suppress() takes its exception types in any order"
_RETRIEVED = (
    "the task's wake-up already read the failed future's result, so asyncio has nothing left "
    "to report as never retrieved"
)
_IN_A_TASK = "submit is always awaited inside a task: current_task() is never None there"
_NONE_IS_FALSE = "falling off the end returns None, which the callers read as False"

# Mutant key (Mutant.key: path, scope, the line's text and column, the change) → why no test
# can tell it from the original. Counted apart, never run.
EQUIVALENT: dict[str, str] = {
    'src/voice_call/store/group_commit.py:W: `W = TypeVar("W")  # one queued write`@12:'
    " \"W\" -> ('')": ("a TypeVar's name is for type checkers and reprs only"),
    'src/voice_call/store/group_commit.py:R: `R = TypeVar("R")  # what a committed write returns`'
    "@12: \"R\" -> ('')": ("a TypeVar's name is for type checkers and reprs only"),
    "src/voice_call/store/group_commit.py:GroupCommit.submit: `if _runs_next(loop, "
    "None):  # a batch of one: committed at once, as before batching`@15: _runs_nex"
    "t(loop, None) -> (_runs_next(None, loop))": _COST_ONLY_LONE,
    "src/voice_call/store/group_commit.py:GroupCommit.submit: `batch.flush.cancel()"
    "`@12: batch.flush.cancel() -> pass": _STALE_FLUSH,
    "src/voice_call/store/group_commit.py:GroupCommit.submit: `return queued.future"
    ".result()`@12: return queued.future.result() -> pass": _DONE_FUTURE,
    "src/voice_call/store/group_commit.py:GroupCommit.flush: `for queued, outcome i"
    "n zip(queue, outcomes, strict=True):`@59: True -> (False)": _STRICT,
    "src/voice_call/store/group_commit.py:GroupCommit._outlive: `if queued.future.c"
    "ancelled():`@15: queued.future.cancelled() -> not (queued.future.cancelled())": _SETTLED_FIRST,
    "src/voice_call/store/group_commit.py:GroupCommit._outlive: `with contextlib.su"
    "ppress(asyncio.CancelledError, Exception):`@17: contextlib.suppress(asyncio.Ca"
    "ncelledError, Exception) -> (contextlib.suppress(Exception, asyncio.CancelledE"
    "rror))": _SUPPRESS_ORDER,
    "src/voice_call/store/group_commit.py:GroupCommit._outlive: `await queued.futur"
    "e`@16: await queued.future -> pass": _SETTLED_FIRST,
    "src/voice_call/store/group_commit.py:GroupCommit._outlive: `queued.future.exce"
    "ption()  # retrieved: asyncio must not log it as forgotten`@12: queued.future."
    "exception() -> pass": _RETRIEVED,
    "src/voice_call/store/group_commit.py:GroupCommit._outlive: `raise cancelled`@1"
    "2: raise cancelled -> pass": _IN_A_TASK,
    "src/voice_call/store/group_commit.py:_runs_next: `return False`@8: return Fals"
    "e -> pass": _NONE_IS_FALSE,
    "src/voice_call/store/group_commit.py:_runs_next: `return True`@8: return True "
    "-> pass": _COST_ONLY_LONE,
    "src/voice_call/store/group_commit.py:_runs_next: `return True`@15: True -> (Fa"
    "lse)": _COST_ONLY_LONE,
    "src/voice_call/store/sqlite.py:_apply: `if stored < len(save.transcript):`@11:"
    " stored < len(save.transcript) -> (stored <= len(save.transcript))": (
        "when as many entries are stored as the record has, the insert gets no rows: a no-op"
    ),
    "src/voice_call/store/sqlite.py:SqliteStore.save: `if event is None or logged is None:`@11:"
    " event is None or logged is None -> (event is None and logged is None)": (
        "exactly one of them None never happens: a save without an event logs nothing (None), "
        "and a save with one always gets its seq back (a duplicate raises instead)"
    ),
    f"{_TOKENS}:MAX_TOKEN_CHARS: `MAX_TOKEN_CHARS = 256`@18: 256 -> (2560)": (
        _NO_VALID_TOKEN_IS_256
    ),
    f"{_TOKENS}:StreamTokens.check: `match = _SHAPE.fullmatch(token) if len(token) <= "
    "MAX_TOKEN_CHARS else None`@43: len(token) <= MAX_TOKEN_CHARS -> "
    "(len(token) < MAX_TOKEN_CHARS)": _NO_VALID_TOKEN_IS_256,
    f"{_TOKENS}:StreamTokens.__init__: `self._key = secret or secrets.token_bytes(32)`@50: "
    "32 -> (320)": (
        "the length of the random per-process key: 320 bytes is as unguessable as 32, and "
        "nothing outside the process ever sees it"
    ),
    f"{_RPC}:ensure_rpc_token: `return existing`@8: return existing -> pass": (
        "the link that follows never replaces an existing token file, so the same token is "
        "returned; only a temporary file is written and removed on the way"
    ),
    f'{_RPC}:ensure_rpc_token: `tmp = path.with_name(f".{{TOKEN_FILE}}.{{os.getpid()}}")`@25: '
    "f\".{TOKEN_FILE}.{os.getpid()}\" -> (f'.{TOKEN_FILE}{os.getpid()}')": _TEMP_NAME,
    f'{_RPC}:ensure_rpc_token: `tmp = path.with_name(f".{{TOKEN_FILE}}.{{os.getpid()}}")`@25: '
    "f\".{TOKEN_FILE}.{os.getpid()}\" -> (f'{TOKEN_FILE}.{os.getpid()}')": _TEMP_NAME,
    f"{_RPC}:ensure_rpc_token: `tmp.unlink(missing_ok=True)`@30: True -> (False)": (
        "the temporary file always exists when it is unlinked"
    ),
    f"{_RPC}:read_rpc_token: `return None`@8: return None -> pass": (
        "the function ends there: falling off its end returns None as well"
    ),
    f"{_SIG}/twilio.py:_port_variants: `if \";\" in path:  # as Twilio's validator: urlparse's "
    'geturl() drops an empty ";params"`@7: ";" -> (\'\')': (
        "the `;` test only spares a second parse: for a path without `;` urlparse's geturl() "
        "rebuilds the same URL as urlunsplit"
    ),
    f'{_MANAGER}:CallManager._apply: `return "applied"`@12: return "applied" -> pass': (
        _FALLS_THROUGH + " (call.ended)"
    ),
    f'{_MANAGER}:CallManager._apply: `return "applied"`@12: return "applied" -> pass #2': (
        _FALLS_THROUGH + " (call.error)"
    ),
    f"{_MANAGER}:CallManager._mutate: `updated = record.model_copy(deep=True)`@45: "
    "True -> (False)": (
        "a shallow copy: the record was just read from the store under the call's lock and is "
        "dropped afterwards, so nothing else shares its nested metadata"
    ),
    f"{_MANAGER}:CallManager._mutate: `return record`@16: return record -> pass": (
        "a change that logs nothing changed nothing: saving the unchanged copy without an "
        "event leaves the store as it was"
    ),
    "src/voice_call/media/registry.py:MediaSessions.token: `def token(self, call_id: str, "
    "min_ttl_s: float = 0, *, grant: str | None = None) -> str:`@53: 0 -> (1)": (
        "a default minimum of 1 s under a TTL the config keeps at 1 s or more"
    ),
    "src/voice_call/media/registry.py:MediaSessions.answer_stream: `min_ttl_s: float = 0,`@27: "
    "0 -> (1)": "a default minimum of 1 s under a TTL the config keeps at 1 s or more",
    f"{_SIG}/twilio.py:_matched: `return next((text for text, ok in zip(texts, matches, "
    "strict=True) if ok), None)`@65: True -> (False)": (
        "`zip(strict=False)`: both lists are built from the same variants, always equal in length"
    ),
    f"{_PLIVO}:_digest_bytes: `if not text or len(text) > 256:`@7: not text or len(text) > 256 "
    "-> (not text and len(text) > 256)": _ANY_DIGEST,
    f"{_PLIVO}:_digest_bytes: `if not text or len(text) > 256:`@19: len(text) > 256 -> "
    "(len(text) >= 256)": _ANY_DIGEST,
    f"{_PLIVO}:_digest_bytes: `if not text or len(text) > 256:`@31: 256 -> (2560)": _ANY_DIGEST,
    f"{_PLIVO}:_digest_bytes: `return None`@8: return None -> pass": _ANY_DIGEST,
    f"{_PLIVO}:_digest_bytes: `return None`@8: return None -> pass #2": (
        "the function ends there: falling off its end returns None as well"
    ),
    f"{_PLIVO}:v3_base_string: `def v3_base_string(url: str, params: Params, method: str = "
    '"POST") -> str:`@59: "POST" -> (\'\')': _NOT_GET,
    f"{_PLIVO}:sign_v3: `def sign_v3(auth_token: str, url: str, params: Params, nonce: str, "
    'method: str = "POST") -> str:`@81: "POST" -> (\'\')': _NOT_GET,
    f'{_PLIVO}:validate_v3: `method: str = "POST",`@18: "POST" -> (\'\')': _NOT_GET,
    f"{_PLIVO}:v3_request_key: `def v3_request_key(url: str, params: Params, method: str = "
    '"POST") -> str:`@59: "POST" -> (\'\')': _NOT_GET,
    f"{_MANAGER}:CallManager._accept_inbound: `self.provider.hangup(record, "
    '"inbound-policy"), "reject", quiet=True`@64: "reject" -> (\'\')': _LOG_WORDING,
    f"{_MANAGER}:CallManager._accept_inbound: `await self._provider_action(self.provider."
    'answer(record), "answer", quiet=True)`@66: "answer" -> (\'\')': _LOG_WORDING,
    f'{_PLIVO}:_digest_bytes: `altchars = b"-_" if ("-" in text or "_" in text) else None`@25: '
    "\"-\" -> ('')": _ALTCHARS,
    f'{_PLIVO}:_digest_bytes: `altchars = b"-_" if ("-" in text or "_" in text) else None`@40: '
    "\"_\" -> ('')": _ALTCHARS,
}
