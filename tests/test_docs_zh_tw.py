"""The Traditional Chinese docs stay in step with the English ones (issue 19).

Pairs are found by the files that exist: README.md ↔ README.zh-TW.md (required), and
docs/<page>.md ↔ docs/zh-TW/<page>.md for every translated page. For each pair:

- **Code blocks.** The fenced blocks (info string and body) are the same, byte for byte and
  in the same order: a command or config changed on one side only fails here.
- **Sections.** Same headings, level by level, in the same order; titles are translated, so
  what is compared is each heading's level and its `code` spans.
- **Links.** Every relative link and image of the English page (resolved from its folder) is
  also in the Chinese page: the same file, or that file's zh-TW counterpart. Every `#anchor`
  in the Chinese page names one of its own headings (translated titles have new anchors).

The checks are plain functions over the pages' text, so the fixture tests below show each one
catching what it is for before the real pages are checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZH = "zh-TW"

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@dataclass(frozen=True)
class Page:
    """A markdown page split into what the checks compare."""

    blocks: list[str]
    headings: list[tuple[int, tuple[str, ...]]]
    titles: list[str]
    links: list[str]


def parse(text: str) -> Page:
    """Fenced blocks whole; headings and links only from the prose outside them."""
    blocks: list[str] = []
    headings: list[tuple[int, tuple[str, ...]]] = []
    titles: list[str] = []
    links: list[str] = []
    fence: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if fence is not None:
            fence.append(line)
            if line.strip() == fence[0].strip()[:3]:
                blocks.append("".join(fence))
                fence = None
            continue
        if FENCE.match(line):
            fence = [line]
            continue
        if match := HEADING.match(line):
            headings.append((len(match[1]), tuple(CODE_SPAN.findall(match[2]))))
            titles.append(match[2])
        links += LINK.findall(line) + HTML_SRC.findall(line)
    assert fence is None, f"unclosed fenced block: {fence[0] if fence else ''!r}"
    return Page(blocks, headings, titles, links)


def slug(title: str, seen: dict[str, int]) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes, -N repeats."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").lower()
    base = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("#")


def resolve(page: PurePosixPath, target: str) -> str:
    """A relative target as a path from the repository root ('..' folded)."""
    parts: list[str] = []
    for part in (page.parent / target.split("#")[0]).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def counterpart(path: str) -> str:
    """Where the zh-TW translation of an English page lives."""
    if path == "README.md":
        return "README.zh-TW.md"
    folder, _, name = path.rpartition("/")
    return f"{folder}/{ZH}/{name}" if folder else f"{ZH}/{name}"


def problems(english: str, chinese: str, en_path: str = "README.md") -> list[str]:
    """Every way the Chinese page has drifted from the English one (empty: in step)."""
    en, zh = parse(english), parse(chinese)
    found = block_problems(en.blocks, zh.blocks)
    found += heading_problems(en, zh)
    found += link_problems(en, zh, PurePosixPath(en_path), PurePosixPath(counterpart(en_path)))
    return found


def block_problems(en: list[str], zh: list[str]) -> list[str]:
    for index, (left, right) in enumerate(zip(en, zh, strict=False), start=1):
        if left != right:
            return [f"code block {index} differs:\n--- English\n{left}--- Chinese\n{right}"]
    if len(en) != len(zh):
        return [f"{len(en)} code blocks in English, {len(zh)} in Chinese"]
    return []


def heading_problems(en: Page, zh: Page) -> list[str]:
    for index, (left, right) in enumerate(zip(en.headings, zh.headings, strict=False)):
        if left != right:
            return [
                f"heading {index + 1} differs: English {en.titles[index]!r} (level {left[0]}), "
                f"Chinese {zh.titles[index]!r} (level {right[0]}); codes {left[1]} vs {right[1]}"
            ]
    if len(en.headings) != len(zh.headings):
        return [f"{len(en.headings)} headings in English, {len(zh.headings)} in Chinese"]
    return []


def link_problems(en: Page, zh: Page, en_path: PurePosixPath, zh_path: PurePosixPath) -> list[str]:
    zh_targets = {resolve(zh_path, target) for target in zh.links if is_relative(target)}
    found = [
        f"link {target!r} of the English page is missing from the Chinese page"
        for target in en.links
        if is_relative(target)
        and resolve(en_path, target) not in (*zh_targets, str(zh_path))  # the language switch
        and counterpart(resolve(en_path, target)) not in zh_targets
    ]
    seen: dict[str, int] = {}
    anchors = {slug(title, seen) for title in zh.titles}
    found += [
        f"anchor {target!r} of the Chinese page names none of its headings"
        for target in zh.links
        if target.startswith("#") and target[1:] not in anchors
    ]
    return found


def pairs() -> list[str]:
    """English pages (paths from the root) that have a Chinese counterpart."""
    found = ["README.md"]
    found += sorted(
        f"docs/{page.name}"
        for page in (ROOT / "docs" / ZH).glob("*.md")
        if (ROOT / "docs" / page.name).is_file()
    )
    return found


# --- fixture: a tiny English/Chinese pair and the drift each check must catch ----------------

EN = """\
English | [繁體中文](README.zh-TW.md)

# demo

Run it, see [setup](#set-it-up) and [the guide](docs/guide.md):

```bash
voicecall demo
```

## Set it up

![shot](docs/img/a.png)

```json5
{ fromNumber: "+15550001234" }
```

### The `tts` key

## Later
"""

ZH_OK = """\
[English](README.md) | 繁體中文

# demo

執行它，請看[設定](#設定)與[指南](docs/zh-TW/guide.md)：

```bash
voicecall demo
```

## 設定

![畫面](docs/img/a.png)

```json5
{ fromNumber: "+15550001234" }
```

### `tts` 設定鍵

## 之後
"""


def test_fixture_pair_in_step_has_no_problems() -> None:
    assert problems(EN, ZH_OK) == []


def test_fixture_missing_block_is_caught() -> None:
    chinese = ZH_OK.replace('```json5\n{ fromNumber: "+15550001234" }\n```\n', "")
    assert problems(EN, chinese) == ["2 code blocks in English, 1 in Chinese"]


def test_fixture_changed_block_is_caught() -> None:
    chinese = ZH_OK.replace("+15550001234", "+15550009999")
    (problem,) = problems(EN, chinese)
    assert problem.startswith("code block 2 differs")


def test_fixture_changed_block_language_is_caught() -> None:
    (problem,) = problems(EN, ZH_OK.replace("```bash", "```sh"))
    assert problem.startswith("code block 1 differs")


def test_fixture_missing_section_is_caught() -> None:
    (problem,) = problems(EN, ZH_OK.replace("## 之後\n", ""))
    assert problem == "4 headings in English, 3 in Chinese"


def test_fixture_reordered_sections_are_caught() -> None:
    chinese = ZH_OK.replace("### `tts` 設定鍵\n\n## 之後\n", "## 之後\n\n### `tts` 設定鍵\n")
    (problem,) = problems(EN, chinese)
    assert problem.startswith("heading 3 differs")


def test_fixture_heading_code_must_match() -> None:
    (problem,) = problems(EN, ZH_OK.replace("`tts` 設定鍵", "`stt` 設定鍵"))
    assert "('tts',) vs ('stt',)" in problem


def test_fixture_missing_image_and_link_are_caught() -> None:
    chinese = ZH_OK.replace("![畫面](docs/img/a.png)", "").replace("(docs/zh-TW/guide.md)", "")
    assert problems(EN, chinese) == [
        "link 'docs/guide.md' of the English page is missing from the Chinese page",
        "link 'docs/img/a.png' of the English page is missing from the Chinese page",
    ]


def test_fixture_dangling_anchor_is_caught() -> None:
    (problem,) = problems(EN, ZH_OK.replace("(#設定)", "(#set-it-up)"))
    assert problem == "anchor '#set-it-up' of the Chinese page names none of its headings"


def test_fixture_a_fence_inside_prose_is_not_a_heading() -> None:
    page = parse("# a\n\n```bash\n# a comment, not a heading\n```\n")
    assert page.headings == [(1, ())]
    assert page.blocks == ["```bash\n# a comment, not a heading\n```\n"]


def test_counterparts_and_relative_targets_resolve_from_each_folder() -> None:
    assert counterpart("docs/sim.md") == "docs/zh-TW/sim.md"
    assert resolve(PurePosixPath("docs/zh-TW/sim.md"), "../img/a.png") == "docs/img/a.png"
    assert resolve(PurePosixPath("docs/sim.md"), "img/a.png#x") == "docs/img/a.png"


# --- the real pages --------------------------------------------------------------------------


def test_the_readme_has_a_chinese_counterpart_and_they_link_each_other() -> None:
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-TW.md").read_text(encoding="utf-8")
    assert "(README.zh-TW.md)" in english.splitlines()[0]
    assert "(README.md)" in chinese.splitlines()[0]


@pytest.mark.parametrize("page", pairs())
def test_chinese_page_is_in_step_with_the_english_one(page: str) -> None:
    english = (ROOT / page).read_text(encoding="utf-8")
    chinese = (ROOT / counterpart(page)).read_text(encoding="utf-8")
    assert problems(english, chinese, page) == []
