"""Where text for speech may be cut: one set of sentence rules for every place that cuts it.

Synthesis (or the carrier's own `<Say>`) can start on the first sentence while the rest is
still being written or synthesized, so a reply is spoken sentence by sentence:

- `SentenceChunker` / `sentences`: model tokens in, sentences out, each released the moment it
  is known to be complete (the responders in agent/responders/);
- `split_sentences`: a whole text in sentences, whitespace-normalised (media/playback.py
  synthesizes one sentence at a time);
- `pack_sentences`: a whole text in pieces under a length limit, each as many whole sentences
  as fit (a carrier's per-request limit: Telnyx `speak`, providers/telnyx/voice.py).

The rules:

- `!`, `?`, `…` and a line break end a sentence at once;
- the full-width `。`, `！`, `？`, `；`, `．` and `｡` of Chinese and Japanese end one at once too,
  with no space after them (those scripts put none between sentences); so do `. ! ? ; …`
  typed after a Chinese character and followed by one ("真的嗎?你確定" is two sentences);
- an abbreviation or initial written inside Chinese ("請找Dr. Wang", "在U.S.住") is read from
  the first Latin letter, so it keeps its period as in English text;
- `.` ends one at once when it follows a letter (the token stream rarely goes on after "Sure."),
  but not after an abbreviation ("Dr.", "e.g.") or a capital initial ("J."; "I." and "A." are
  words, so "So am I." ends); after a digit it waits for the next character, since "3." may
  become "3.5";
- `.` followed by anything but whitespace ("3.5", "example.com") never ends a sentence;
- a sentence longer than `max_chars` (a run-on) is cut at its last clause mark past a third of
  the limit, else at its last space, so a model that never stops a sentence still gets spoken
  and no piece holds the first audio back.

Whitespace inside a streamed sentence is kept; each chunk is stripped at its ends. Punctuation
that arrives right after a sentence was released at the end of the text so far (the last dot of
an ellipsis, a closing quote) is dropped rather than spoken on its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator

TERMINALS = ".!?…"
FULL_WIDTH_TERMINALS = "。！？；．｡"
CLOSERS = "\"')]}»”’」』）】"
OPENERS = "\"'([{«“‘"
CLAUSE_MARKS = (", ", "; ", ": ", " - ", " – ", " — ", "，", "、", "：")
# Scripts written without spaces: CJK punctuation, kana, ideographs, full-width forms.
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
# Words that end with a period without ending the sentence (compared lower-case, no last dot).
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
        "etc",
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
_SPACES_BUT_LINE_BREAKS = re.compile(r"[^\S\n]+")


class SentenceChunker:
    """Feed text as it streams in; take complete sentences out, none longer than `max_chars`."""

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
            text = text.lstrip(TERMINALS + ";" + FULL_WIDTH_TERMINALS + CLOSERS)
            self._released_at_end = not text
        self._buf += text
        out: list[str] = []
        while True:
            cut = self._next_boundary()
            if cut is None or cut > self.max_chars:  # none yet, or too late: cut a run-on
                forced = self._forced_cut()
                cut = forced if forced is not None else cut
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
            if ch in FULL_WIDTH_TERMINALS:
                return self._after_closers(i + 1)
            if ch not in TERMINALS and not (ch == ";" and i > 0 and is_cjk(buf[i - 1])):
                i += 1
                continue
            end = i + 1
            while end < len(buf) and (buf[end] in TERMINALS or buf[end] in CLOSERS):
                end += 1
            run = buf[i:end]
            if end < len(buf) and is_cjk(buf[end]) and _ends_before_cjk(buf, i, run):
                return end  # "真的嗎?你" / "嗯……我": Chinese puts no space after a sentence
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

    def _after_closers(self, end: int) -> int:
        """Past the terminals and closing marks from `end` on ("好！」" ends after the quote)."""
        buf = self._buf
        while end < len(buf) and (buf[end] in FULL_WIDTH_TERMINALS or buf[end] in CLOSERS):
            end += 1
        return end

    def _ends_here(self, dot: int) -> bool:
        """A period at the very end of what arrived so far: decide without the next character."""
        before = self._buf[dot - 1] if dot > 0 else ""
        if not before.isalpha() and before not in CLOSERS:
            return False  # "3." may be "3.5"; "..." handled by the caller
        return not _abbreviation(self._buf, dot)

    def _forced_cut(self) -> int | None:
        """Where to cut a buffer longer than `max_chars` that holds no sentence end in time."""
        if len(self._buf) <= self.max_chars:
            return None
        head = self._buf[: self.max_chars]
        at, mark = max((head.rfind(mark), mark) for mark in CLAUSE_MARKS)
        if at > self.max_chars // 3:
            return at + len(mark.rstrip())  # the mark stays with the words before it
        space = head.rfind(" ")
        return space if space > 0 else self.max_chars


def is_cjk(ch: str) -> bool:
    """A character of a script written without spaces between words or sentences."""
    return bool(_CJK.match(ch))


def _ends_before_cjk(buf: str, at: int, run: str) -> bool:
    """A terminal run at `at` followed straight by a CJK character ends a sentence when it is
    not a lone period, or a period typed after a CJK character ("好了.我們"; not "U.S.住")."""
    return not _period_only(run) or (at > 0 and is_cjk(buf[at - 1]))


def _period_only(run: str) -> bool:
    marks = [ch for ch in run if ch in TERMINALS]
    return all(ch == "." for ch in marks) and len(marks) == 1


def _abbreviation(buf: str, dot: int) -> bool:
    """The word before the period at `dot` is an abbreviation or a capital initial."""
    start = dot
    while start > 0 and not buf[start - 1].isspace() and not is_cjk(buf[start - 1]):
        start -= 1
    word = buf[start:dot].lstrip(OPENERS)
    if len(word) == 1:
        return word.isupper() and word not in ("I", "A")
    return word.lower() in ABBREVIATIONS


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


def split_sentences(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """The sentences of a whole `text`, whitespace-normalised, none longer than `max_chars`."""
    chunker = SentenceChunker(max_chars)
    out = chunker.feed(_SPACES_BUT_LINE_BREAKS.sub(" ", text))
    rest = chunker.flush()
    return [*out, rest] if rest else out


def pack_sentences(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, each as many whole sentences as fit."""
    pieces: list[str] = []
    for sentence in split_sentences(text, limit):
        # Chinese and Japanese sentences follow each other with no space between them.
        gap = "" if pieces and (is_cjk(pieces[-1][-1]) or is_cjk(sentence[0])) else " "
        if pieces and len(pieces[-1]) + len(gap) + len(sentence) <= limit:
            pieces[-1] += gap + sentence
        else:
            pieces.append(sentence)
    return pieces
