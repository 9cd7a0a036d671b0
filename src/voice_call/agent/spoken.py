"""The spoken-output contract: what part of a model's reply is read aloud.

The system prompt asks for `{"spoken": "…"}` and nothing else (`CONTRACT`), as the seed plugin
does, because models wrap replies in JSON or code fences, or think out loud first ("The user is
asking…"), and a phone line must hear none of that. Both readers below apply the same rules:

- a JSON object with a string `spoken` (whole, in a ``` fence, or embedded in other text), or an
  inline `"spoken": "…"`, is spoken as that string and nothing else;
- a JSON object without it is never read out (a string `text`/`reply`/`message` is taken);
- reasoning blocks (`<think>…</think>`, `<reasoning>`, `<analysis>`, `<thinking>`) and leading
  lines that plan instead of speak ("Thinking…", "Let me think", "The user is asking…",
  "I should respond…"; such a lead-in runs to the next line break) are dropped;
- anything else is plain text: code fence markers and backticks removed.

`extract_spoken` reads a whole reply (the hook's JSON answer, a tool's goodbye); `SpokenStream`
reads one as it streams, passing plain text on at once and the `spoken` string's content as it
arrives, so sentence-by-sentence speech starts as early as without the contract.
"""

from __future__ import annotations

import json
import re
from typing import Any

CONTRACT = (
    'Answer with one JSON object and nothing else: {"spoken": "<exactly the words to say>"}. '
    'Put only what the person should hear in "spoken": no reasoning, notes, markdown or '
    "code fences."
)

SPOKEN_FIELDS = ("spoken", "text", "reply", "message", "response", "answer")
REASONING_TAGS = ("think", "thinking", "reasoning", "analysis")
_REASONING_BLOCK = re.compile(
    r"<(think|thinking|reasoning|analysis)>.*?(?:</\1>|\Z)", re.DOTALL | re.IGNORECASE
)
_FENCE_LINE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_FENCED = re.compile(r"```[\w+-]*[ \t]*\n(.*?)```", re.DOTALL)
_INLINE = re.compile(r'"spoken"\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL)
_SPOKEN_OPENING = re.compile(r'"spoken"\s*:\s*"')
# A line that starts like this plans the answer instead of being it. Narrow on purpose: "I need
# to ask you…" or "The caller ID shows…" are things a bot says.
_LEAD_IN = re.compile(
    r"""(?:
        (?:thinking|thoughts?|reasoning|analysis|planning|plan)\s*(?:\.\.\.|…|:|-|\n|\Z)
      | let(?:'s|\s+me)\s+think
      | (?:(?:okay|ok|alright|so|hmm+|well)[,.…]*\s+)*the\s+(?:user|caller)
        (?:'s|\s+(?:is|was|wants|wanted|asks|asked|said|says|seems|just|would|needs|has|had
                   |mentioned|greeted|responded|replied|might|may)\b)
      | (?:(?:okay|ok|alright|so)[,.…]*\s+)*(?:i|we)\s+(?:should|need\s+to|must)\s+
        (?:respond|reply|answer|greet|acknowledge|keep\s+it|be\s+brief)\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# First words a lead-in can start with: any other first word is plain text at once.
_LEAD_IN_STARTS = frozenset(
    {"thinking", "thought", "thoughts", "reasoning", "analysis", "planning", "plan", "let"}
    | {"let's", "the", "okay", "ok", "alright", "so", "hmm", "well", "i", "we"}
)
_DECIDE_AFTER = 48  # characters: enough for any lead-in, shorter than most first sentences
# A sentence or line has ended (a dot followed by more than dots: "Thinking..." is one mark).
_SENTENCE_END = re.compile(r"[.!?…:]+[^.!?…:]|\n")


def collapse(text: str) -> str:
    """Whitespace runs to one space, ends stripped."""
    return " ".join(text.split())


def extract_spoken(reply: str) -> str:
    """The words to say for a whole reply (see the module docstring); "" to stay quiet."""
    text = _REASONING_BLOCK.sub("\n\n", reply)
    found = _from_json(text)
    if found is not None:
        return collapse(found)
    text = _FENCE_LINE.sub("", text).replace("`", "")
    return collapse(drop_lead_ins(text))


def drop_lead_ins(text: str) -> str:
    """`text` less its leading planning lines (a lead-in ends at a line break: "Thinking…" on
    a line of its own, or a paragraph of reasoning, then the answer)."""
    lines = text.split("\n")
    while lines and (not lines[0].strip() or is_lead_in(lines[0])):
        lines.pop(0)
    return "\n".join(lines)


def is_lead_in(paragraph: str) -> bool:
    return _LEAD_IN.match(paragraph.lstrip()) is not None


def _from_json(text: str) -> str | None:
    """The spoken string of a JSON reply; "" for JSON with none; None when it is not JSON."""
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCED.finditer(text))]
    first, last = stripped.find("{"), stripped.rfind("}")
    if 0 <= first < last:
        candidates.append(stripped[first : last + 1])
    any_object = False
    for candidate in candidates:
        value = _parse_object(candidate)
        if value is not None:
            spoken = _spoken_field(value)
            if spoken is not None:
                return spoken
            any_object = True
    # An object without a text field does not end the search: the braces found may sit inside
    # an inline `"spoken": "{}"`, or the field may be nested (`{"data": {"spoken": …}}`).
    inline = _INLINE.search(text)
    if inline is not None:
        return _json_string(inline.group(1))
    return "" if any_object else None  # JSON, but nothing to say: never read the object aloud


def _parse_object(candidate: str) -> dict[str, Any] | None:
    if not candidate.startswith("{"):
        return None
    try:
        value = json.loads(candidate)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _spoken_field(obj: dict[str, Any]) -> str | None:
    for name in SPOKEN_FIELDS:
        value = obj.get(name)
        if isinstance(value, str):
            return value
    return None


def _json_string(body: str) -> str:
    try:
        decoded = json.loads(f'"{body}"', strict=False)
    except ValueError:
        return body
    return decoded if isinstance(decoded, str) else body


class SpokenStream:
    """`extract_spoken` for a streamed reply: `feed` each piece, then `finish`; each returns
    the text to speak so far (for a sentence chunker), "" while it cannot tell yet."""

    def __init__(self) -> None:
        self._mode = "start"  # start, plain, skip (reasoning/lead-in), seek (JSON), string, done
        self._buf = ""
        self._closing = ""  # what ends the block being skipped

    def feed(self, piece: str) -> str:
        self._buf += piece
        out: list[str] = []
        while True:
            before = (self._mode, len(self._buf))
            out.append(self._step(final=False))
            if (self._mode, len(self._buf)) == before:
                return "".join(out)

    def finish(self) -> str:
        out: list[str] = []
        while True:
            before = (self._mode, len(self._buf))
            out.append(self._step(final=True))
            if (self._mode, len(self._buf)) == before:
                break
        if self._mode == "seek":  # JSON with no `"spoken": "` opening: what it says, if any
            out.append(extract_spoken(self._buf))
        self._buf = ""
        return "".join(out)

    # --- one step: consume what the current mode can, maybe switch mode --------------------

    def _step(self, final: bool) -> str:
        if self._mode == "start":
            return self._start(final)
        if self._mode == "plain":
            return self._plain()
        if self._mode == "skip":
            return self._skip(final)
        if self._mode == "seek":
            return self._seek()
        if self._mode == "string":
            return self._string()
        self._buf = ""  # done: the rest of a JSON reply is not spoken
        return ""

    def _start(self, final: bool) -> str:
        text = self._buf.lstrip()
        if not text:
            return ""
        if text.startswith("<"):
            return self._maybe_reasoning(text, final)
        if "```".startswith(text) and not final:
            return ""  # a fence's first backticks
        if text.startswith("```"):
            line_end = text.find("\n")
            if line_end < 0:
                return "" if not final else self._to("plain", text.replace("`", ""))
            self._buf = text[line_end + 1 :]  # the fence line: ```json
            return ""
        if text.startswith("{") or _SPOKEN_OPENING.match(text):
            return self._to("seek", text)
        if not final and len(text) < 16 and '"spoken"'.startswith(text[:8]):
            return ""  # may become `"spoken": "` (a model that left the braces out)
        if self._planning(text, final):
            self._closing = "\n"
            return self._to("skip", text)
        if self._undecided(text, final):
            return ""
        return self._to("plain", text)

    def _maybe_reasoning(self, text: str, final: bool) -> str:
        lower = text.lower()
        for tag in REASONING_TAGS:
            opening = f"<{tag}>"
            if lower.startswith(opening):
                self._closing = f"</{tag}>"
                return self._to("skip", text[len(opening) :])
            if opening.startswith(lower) and not final:
                return ""  # "<thi": wait
        return self._to("plain", text)

    def _planning(self, text: str, final: bool) -> bool:
        decidable = final or len(text) >= _DECIDE_AFTER or _SENTENCE_END.search(text)
        return bool(decidable) and is_lead_in(text)

    def _undecided(self, text: str, final: bool) -> bool:
        """Could `text` still turn out to be a lead-in? Only while its first word allows it."""
        if final or len(text) >= _DECIDE_AFTER or _SENTENCE_END.search(text):
            return False
        word = re.match(r"[\w']*", text.lower())
        first = re.sub(r"^hmm+$", "hmm", word.group(0) if word else "")
        if len(first) == len(text):  # the first word is not complete yet
            return any(start.startswith(first) for start in _LEAD_IN_STARTS)
        return first in _LEAD_IN_STARTS

    def _plain(self) -> str:
        text, self._buf = self._buf, ""
        brace = text.find("{")
        if brace >= 0:  # JSON after some words: read what it says, never the braces
            self._buf = text[brace:]
            self._mode = "seek"
            text = text[:brace]
        return text.replace("`", "")

    def _skip(self, final: bool) -> str:
        start = self._buf.lower().find(self._closing)
        if start < 0:
            # keep what may be the start of the closing mark
            keep = max(0, len(self._buf) - len(self._closing) + 1)
            self._buf = "" if final else self._buf[keep:]
            return ""
        self._buf = self._buf[start + len(self._closing) :]
        self._mode = "start"
        return ""

    def _seek(self) -> str:
        found = _SPOKEN_OPENING.search(self._buf)
        if found is None:
            return ""
        self._buf = self._buf[found.end() :]
        self._mode = "string"
        return ""

    def _string(self) -> str:
        """Decode the `spoken` string's content up to what has arrived; stop at its quote."""
        body, closed = _string_prefix(self._buf)
        self._buf = self._buf[len(body) + (1 if closed else 0) :]
        if closed:
            self._mode = "done"
        return _json_string(body) if body else ""

    def _to(self, mode: str, text: str) -> str:
        self._mode = mode
        self._buf = text
        return ""


_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}$")


def _string_prefix(raw: str) -> tuple[str, bool]:
    """The longest whole-escape prefix of a JSON string body, and whether its closing quote
    was reached (a half escape, or the first half of a surrogate pair, waits for more)."""
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == '"':
            return raw[:i], True
        if ch == "\\":
            size = 6 if raw[i + 1 : i + 2] == "u" else 2
            if i + size > len(raw):
                break
            if size == 6 and _HIGH_SURROGATE.search(raw[i : i + 6]):
                if i + 12 > len(raw):
                    break
                size = 12
            i += size
            continue
        i += 1
    return raw[:i], False
