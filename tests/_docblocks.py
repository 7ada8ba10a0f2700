"""The Python code blocks of the documentation (``README.md``, ``docs/**/*.md``) and the markers before them.

A block is a fenced ```` ```python ```` block. An HTML comment on the line before it (blank lines between are
allowed) says how the tests treat it:

- ``<!-- skip: REASON -->``: not run (it needs data, a GPU, another package, or takes long); the test reports
  the reason;
- ``<!-- tested-by: PATH -->``: run by that test file instead (the README's quick start).

Every other block runs, the blocks of a page in order, in one namespace and a fresh working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("skip", "tested-by")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^\n]*$")
_MARKER = re.compile(r"^\s*<!--\s*([\w-]+)\s*:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository root
    line: int  # 1-based line of the first line of code
    code: str
    marker: str | None = None  # one of MARKERS, or None: run
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The Python blocks of one page, with the marker comment before each (other languages are not read)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang in ("python", "py"):
            k = i - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = _MARKER.match(lines[k]) if k >= 0 else None
            body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:j]]
            out.append(Block(page, i + 2, "\n".join(body) + "\n",
                             marker.group(1) if marker else None, marker.group(2) if marker else ""))
        i = j + 1
    return out


def markers(path: Path) -> list[tuple[int, str, str]]:
    """Every ``<!-- name: text -->`` comment of a page whose name is a block marker: ``(line, name, text)``."""
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = _MARKER.match(line)
        if m and m.group(1) in MARKERS:
            found.append((n, m.group(1), m.group(2)))
    return found


def run(block: Block, namespace: dict) -> None:
    """Execute a block; tracebacks name the page and its line numbers."""
    code = compile("\n" * (block.line - 1) + block.code, str(ROOT / block.page), "exec")
    exec(code, namespace)


def quick_start() -> Block:
    """The README's quick start: the first Python block under ``## Quick start``."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    start = text.index("\n## Quick start\n")
    line = text[:start].count("\n") + 2
    return next(b for b in blocks(readme) if b.line > line)
