"""Split a reply into sentences, so synthesis of the first one starts before the rest.

The first sentence of "Sure. Tuesday at three works; I'll send a confirmation." is on the line
while the second is still being synthesized. Abbreviations ("Dr.", "e.g.") and initials do not
end a sentence; a very long sentence is cut at a comma-like break (or a space) so one run-on
reply cannot hold the first audio back.
"""

from __future__ import annotations

import re

MAX_CHARS = 240
_BREAK = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+")
_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "approx")
)


def _ends_with_abbreviation(piece: str) -> bool:
    word = piece.rstrip("\"'”’)]").rsplit(maxsplit=1)[-1].rstrip(".")
    if len(word) == 1:  # an initial ("J. Smith"), but "so am I." ends a sentence
        return word.isupper() and word not in "IA"
    return word.lower() in _ABBREVIATIONS


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    out: list[str] = []
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        cut = max(window.rfind(mark) for mark in (", ", "; ", ": ", " – ", " - "))
        cut = cut + 1 if cut > max_chars // 3 else window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        out.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        out.append(sentence)
    return out


def split_sentences(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """The sentences of `text`, whitespace-normalised, none longer than `max_chars`."""
    text = " ".join(text.split())
    if not text:
        return []
    pieces: list[str] = []
    start = 0
    for match in _BREAK.finditer(text):
        candidate = text[start : match.start()].strip()
        if candidate and not _ends_with_abbreviation(candidate):
            pieces.append(text[start : match.end()].strip())
            start = match.end()
    pieces.append(text[start:].strip())
    return [part for piece in pieces if piece for part in _cut_long(piece, max_chars)]
