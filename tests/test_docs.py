"""The documentation that lives in the repository stays in step with the code.

docs/methods.md has a section for every built-in method, every `docs/<page>.md#anchor` a
comment or page cites names a heading that exists, and code points to docs/ rather than
to files outside the repository.
"""
from __future__ import annotations

import re
from pathlib import Path

from bench.plugins import METHODS, load_builtin_methods

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Where code and grid comments live; leaderboard results are data, not prose.
CODE_DIRS = ("bench", "methods", "app", "leaderboards")
OUTSIDE_POINTER = re.compile(r"\bDESIGN\b|METHODS\.md|seeds/")
DOC_LINK = re.compile(r"(?:docs/)?\b(conventions|methods|ARCHITECTURE)\.md#([A-Za-z0-9_-]+)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lowercased, punctuation other than hyphens and
    underscores dropped, spaces turned into hyphens (fenced code is not a heading)."""
    found, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*)", line)):
            text = m.group(1).strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def builtin_methods() -> list[str]:
    load_builtin_methods()
    # Installed plugins (entry points) document themselves; the built-ins are documented here.
    return [n for n in METHODS.list() if METHODS.get(n).__module__.startswith("methods.")]


def code_files() -> list[Path]:
    files = []
    for d in CODE_DIRS:
        for path in (ROOT / d).rglob("*"):
            if path.suffix in (".py", ".yaml") and "results" not in path.relative_to(ROOT).parts:
                files.append(path)
    return files


def test_every_builtin_method_has_a_section():
    names = builtin_methods()
    assert len(names) >= 13
    sections = anchors(DOCS / "methods.md")
    missing = [n for n in names if n not in sections]
    assert not missing, f"docs/methods.md has no '### <name>' section for {missing}"


def test_cited_anchors_exist():
    pages = {p.stem: anchors(p) for p in DOCS.glob("*.md")}
    sources = [*code_files(), ROOT / "README.md", *DOCS.glob("*.md"),
               *(ROOT / "tests").rglob("*.py")]
    broken = []
    for path in sources:
        if path.name == Path(__file__).name:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for page, anchor in DOC_LINK.findall(line):
                if page in pages and anchor not in pages[page]:
                    broken.append(f"{path.relative_to(ROOT)}:{lineno}: {page}.md#{anchor}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)


def test_code_points_inside_the_repository():
    hits = []
    for path in code_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE_POINTER.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not hits, ("cite docs/ (conventions.md, methods.md, ARCHITECTURE.md) or the paper "
                      "itself, not files outside the repository:\n" + "\n".join(hits))
