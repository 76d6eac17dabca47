"""The documents the code cites: every ``docs/method.md#id`` cited anywhere in the repository is an
anchor of docs/method.md, and every relative link of the Markdown files leads to a file."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"docs/method\.md#([a-z0-9-]+)")
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _files(*patterns: str) -> list[Path]:
    return [p for pattern in patterns for p in sorted(ROOT.glob(pattern))
            if ".venv" not in p.parts and p.resolve() != Path(__file__).resolve()]


def test_every_method_citation_is_an_anchor():
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', (ROOT / "docs" / "method.md").read_text()))
    assert len(anchors) >= 33  # one per deviation of §9 at least
    cited = {}
    for path in _files("src/**/*.py", "tests/*.py", "bench/**/*.py", "bench/**/*.md", "*.md", "docs/*.md"):
        for name in CITATION.findall(path.read_text()):
            cited.setdefault(name, path.relative_to(ROOT))
    assert cited, "the code cites docs/method.md by anchor"
    missing = {name: str(where) for name, where in cited.items() if name not in anchors}
    assert not missing, f"citations of anchors docs/method.md does not have: {missing}"


def test_no_numbered_section_9_citations_are_left():
    """§9's entries are cited by anchor (their numbers changed when they were grouped by topic)."""
    old = [f"{p.relative_to(ROOT)}: {m}" for p in _files("src/**/*.py", "tests/*.py", "bench/**/*.py", "*.md", "docs/*.md",
                                                          "bench/*.md")
           for m in re.findall(r"§9\.\d+", p.read_text())]
    assert not old, old


def test_relative_links_of_the_documents_lead_to_files():
    broken = []
    for path in _files("*.md", "docs/*.md", "bench/*.md", "bench/history/*.md"):
        for target, _ in LINK.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken
