"""Sentence chunking: model tokens in, speakable sentences out, as early as each is complete.

Speech synthesis (or the carrier's own `<Say>`) can start on the first sentence while the model
is still writing the rest, so a sentence is released the moment it is known to be complete:

- `!`, `?`, `…` and a line break end a sentence at once;
- `.` ends one at once when it follows a letter (the token stream rarely goes on after "Sure."),
  but not after an abbreviation ("Dr.", "e.g.") or a single initial ("J."); after a digit it
  waits for the next character, since "3." may become "3.5";
- `.` followed by anything but whitespace ("3.5", "example.com") never ends a sentence;
- a run-on without any of these is cut at a clause mark (or a space) after `max_chars`, so a
  model that never stops a sentence still gets spoken.

Whitespace inside a sentence is kept; each chunk is stripped at its ends. Punctuation that
arrives right after a sentence was released at the end of the text so far (the last dot of an
ellipsis, a closing quote) is dropped rather than spoken on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

TERMINALS = ".!?…"
CLOSERS = "\"')]}»”’"
CLAUSE_MARKS = (", ", "; ", ": ", " - ", " — ")
# Words that end with a period without ending the sentence (compared lower-case, no dot).
ABBREVIATIONS = frozenset(
    {
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "e.g",
        "i.e",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "mt",
        "ft",
        "a.m",
        "p.m",
        "u.s",
    }
)
DEFAULT_MAX_CHARS = 240


class SentenceChunker:
    """Feed text as it streams in; take complete sentences out."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if max_chars < 20:
            raise ValueError("max_chars must be at least 20")
        self.max_chars = max_chars
        self._buf = ""
        self._pos = 0  # where scanning resumes: everything before it holds no boundary
        # A sentence was released at the very end of the text so far: punctuation that arrives
        # next ("." after "well..", a closing quote) belongs to it and is not spoken alone.
        self._released_at_end = False

    def feed(self, text: str) -> list[str]:
        """Add streamed text; returns the sentences it completed (possibly none)."""
        if self._released_at_end and text:
            text = text.lstrip(TERMINALS + CLOSERS)
            self._released_at_end = not text
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._next_boundary()
            if cut is None:
                cut = self._forced_cut()
                if cut is None:
                    return out
            sentence = self._buf[:cut].strip()
            self._buf = self._buf[cut:]
            self._pos = 0
            self._released_at_end = not self._buf
            if sentence:
                out.append(sentence)

    def flush(self) -> str | None:
        """The rest, once the stream has ended (None when only whitespace is left)."""
        rest = self._buf.strip()
        self._buf, self._pos = "", 0
        return rest or None

    def _next_boundary(self) -> int | None:
        buf = self._buf
        i = self._pos
        while i < len(buf):
            ch = buf[i]
            if ch == "\n":
                return i + 1
            if ch not in TERMINALS:
                i += 1
                continue
            end = i + 1
            while end < len(buf) and (buf[end] in TERMINALS or buf[end] in CLOSERS):
                end += 1
            run = buf[i:end]
            if end == len(buf):  # nothing after the run yet
                if not _period_only(run) or self._ends_here(i):
                    return end
                self._pos = i  # undecided: look again when more text arrives
                return None
            if not buf[end].isspace():
                i = end  # "3.5", "example.com", "?!x"
                continue
            if _period_only(run) and _abbreviation(buf, i):
                i = end
                continue
            return end
        self._pos = len(buf)
        return None

    def _ends_here(self, dot: int) -> bool:
        """A period at the very end of what arrived so far: decide without the next character."""
        before = self._buf[dot - 1] if dot > 0 else ""
        if not before.isalpha() and before not in CLOSERS:
            return False  # "3." may be "3.5"; "..." handled by the caller
        return not _abbreviation(self._buf, dot)

    def _forced_cut(self) -> int | None:
        if len(self._buf) <= self.max_chars:
            return None
        head = self._buf[: self.max_chars]
        for mark in CLAUSE_MARKS:
            at = head.rfind(mark)
            if at > self.max_chars // 3:
                return at + len(mark.rstrip())
        space = head.rfind(" ")
        return space if space > 0 else self.max_chars


def _period_only(run: str) -> bool:
    marks = [ch for ch in run if ch in TERMINALS]
    return all(ch == "." for ch in marks) and len(marks) == 1


def _abbreviation(buf: str, dot: int) -> bool:
    """The word before the period at `dot` is an abbreviation or a single initial."""
    start = dot
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    word = buf[start:dot].lstrip("\"'([{«“‘").lower()
    if len(word) == 1 and word.isalpha():
        return True
    return word in ABBREVIATIONS


async def sentences(
    tokens: AsyncIterable[str], max_chars: int = DEFAULT_MAX_CHARS
) -> AsyncIterator[str]:
    """Sentence chunks from a token stream, each yielded as soon as it is complete."""
    chunker = SentenceChunker(max_chars)
    async for token in tokens:
        for sentence in chunker.feed(token):
            yield sentence
    rest = chunker.flush()
    if rest:
        yield rest
