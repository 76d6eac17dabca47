#!/usr/bin/env python3
"""Rewrite old citations of docs/method.md §9.N and of renamed bench/RESULTS.md sections.

    python apply_citations.py FILE_OR_DIR ...            # dry run: counts per file, changes nothing
    python apply_citations.py --diff FILE_OR_DIR ...     # dry run with a unified diff
    python apply_citations.py --write FILE_OR_DIR ...    # rewrite the files in place

Directories are walked for *.py, *.md, *.toml, *.yaml, *.txt and *.cfg files. The mapping is
CITATIONS.tsv (next to this script, or --tsv), one line per old citation:

    9.27<TAB>convergence                 docs/method.md §9.27 -> docs/method.md#convergence
    heading<TAB>OLD<TAB>NEW[<TAB>FILE]   bench/RESULTS.md, "OLD" -> bench/RESULTS.md, "NEW"
                                         (or FILE, "NEW" when the section moved to FILE)

What it rewrites (every form found in src/, tests/ and bench/*.py on 2026-12-02):

- ``docs/method.md §9.N`` on one line -> ``docs/method.md#<id>``;
- ``docs/method.md`` at the end of a line and ``§9.N`` at the start of the next (docstrings,
  comments: the indentation and a leading ``#`` are kept) -> ``docs/method.md#<id>`` on the
  second line, the first line losing its trailing ``docs/method.md``;
- a bare ``§9.N``, e.g. ``(§9.30)`` or ``docs/method.md §2.4, §9.32`` -> ``docs/method.md#<id>``;
- ranges ``§9.A-§9.B`` -> every entry's ``docs/method.md#<id>``, comma-separated.

``§9.2`` never matches inside ``§9.27`` (no digit may follow), and a bare ``§9`` (the whole
section) is left alone, as are the other sections (``§4``, ``§6`` ...).

A quote ``"Q"`` right after ``RESULTS.md,`` (possibly across a line break) is rewritten when Q
is an old heading of the table, or the start of one, and does not also start a heading or a
bold paragraph name of today's bench/RESULTS.md: quotes that still resolve are left as they are.

It then reports, per file, lines longer than 130 characters that a rewrite made (ruff's limit
in pyproject.toml), §9.N it could not map, and RESULTS.md quotes that resolve nowhere.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg"}
LINE_LIMIT = 130
SECTION = re.compile(r"§9\.(\d+)(?!\d)")  # never §9.2 inside §9.27


def load_mapping(tsv: Path) -> tuple[dict[int, str], list[tuple[str, str, str | None]]]:
    anchors: dict[int, str] = {}
    headings: list[tuple[str, str, str | None]] = []
    for number, line in enumerate(tsv.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if cols[0] == "heading" and len(cols) in (3, 4):
            headings.append((cols[1], cols[2], cols[3] if len(cols) == 4 else None))
        elif len(cols) == 2 and re.fullmatch(r"9\.\d+", cols[0]):
            anchors[int(cols[0].split(".")[1])] = cols[1]
        else:
            sys.exit(f"{tsv}:{number}: not a mapping line: {line!r}")
    return anchors, headings


def section_names(path: Path) -> list[str]:
    """Headings (without '#' and a trailing <a id> anchor) and bold paragraph names of a Markdown file."""
    text = path.read_text()
    heads = [re.sub(r"\s*<a id=.*$", "", line.lstrip("#").strip()) for line in text.splitlines() if line.startswith("#")]
    bolds = [re.sub(r"\s+", " ", m.group(1)).rstrip(".") for m in re.finditer(r"(?:^|\n)\*\*([^*]+?)\*\*", text)]
    return heads + bolds


def method_anchors(path: Path) -> set[str]:
    return set(re.findall(r'<a id="([^"]+)"></a>', path.read_text()))


class Rewriter:
    def __init__(self, anchors: dict[int, str], headings, results_names: list[str]):
        self.anchors = anchors
        self.headings = headings
        self.results_names = results_names
        self.unmapped: list[str] = []

    def anchor(self, n: str) -> str:
        number = int(n)
        if number not in self.anchors:
            self.unmapped.append(f"§9.{n}")
            return f"§9.{n}"
        return f"docs/method.md#{self.anchors[number]}"

    def sections(self, text: str) -> tuple[str, int]:
        count = 0

        def one(m: re.Match) -> str:
            nonlocal count
            count += 1
            return self.anchor(m.group(1))

        def split(m: re.Match) -> str:  # "... docs/method.md\n    # §9.33): ..." -> "...\n    # docs/method.md#id): ..."
            nonlocal count
            count += 1
            return "\n" + m.group(1) + self.anchor(m.group(2))

        def span(m: re.Match) -> str:
            nonlocal count
            first, last = int(m.group(2)), int(m.group(3))
            count += last - first + 1
            return ", ".join(self.anchor(str(k)) for k in range(first, last + 1))

        text = re.sub(r"(docs/method\.md )?§9\.(\d+)-§9\.(\d+)(?!\d)", span, text)
        text = re.sub(r"[ \t]*docs/method\.md[ \t]*\n([ \t]*(?:#[ \t]*)?)§9\.(\d+)(?!\d)", split, text)
        text = re.sub(r"docs/method\.md[ \t]+§9\.(\d+)(?!\d)", one, text)
        text = SECTION.sub(one, text)
        return text, count

    def resolves(self, quote: str) -> bool:
        return any(name.startswith(quote) for name in self.results_names)

    def quotes(self, text: str) -> tuple[str, int, list[str]]:
        count = 0
        unresolved: list[str] = []

        def one(m: re.Match) -> str:
            nonlocal count
            path, gap, quote = m.group(1), m.group(2), m.group(3)
            q = re.sub(r"\s+", " ", quote).strip()
            if self.resolves(q):
                return m.group(0)
            for old, new, where in self.headings:
                if q == old or (old.startswith(q) and (len(q) == len(old) or not old[len(q)].isalnum())):
                    count += 1
                    target = where or path
                    return f'{target},{gap}"{new}"'
            unresolved.append(q)
            return m.group(0)

        text = re.sub(r'((?:bench/)?RESULTS\.md),(\s+)"([^"]+)"', one, text)
        return text, count, unresolved


def files_of(args: list[str]) -> list[Path]:
    out: list[Path] = []
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES and ".git" not in f.parts)
        elif p.is_file():
            out.append(p)
        else:
            sys.exit(f"no such file or folder: {arg}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--write", action="store_true", help="rewrite the files (default: dry run)")
    parser.add_argument("--diff", action="store_true", help="print a unified diff of what would change")
    parser.add_argument("--tsv", type=Path, default=ROOT / "CITATIONS.tsv")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (for RESULTS.md and method.md)")
    args = parser.parse_args()

    anchors, headings = load_mapping(args.tsv)
    known = method_anchors(args.root / "docs" / "method.md")
    missing = sorted(set(anchors.values()) - known)
    if missing:
        sys.exit(f"anchors in {args.tsv} that docs/method.md lacks: {missing}")
    rw = Rewriter(anchors, headings, section_names(args.root / "bench" / "RESULTS.md"))

    totals = [0, 0]
    problems = 0
    for path in files_of(args.paths):
        before = path.read_text()
        after, n_sections = rw.sections(before)
        after, n_quotes, unresolved = rw.quotes(after)
        long_lines = [i for i, line in enumerate(after.splitlines(), 1)
                      if len(line) > LINE_LIMIT and line not in before.splitlines()] if path.suffix == ".py" else []
        if not (n_sections or n_quotes or unresolved or long_lines):
            continue
        totals[0] += n_sections
        totals[1] += n_quotes
        print(f"{path}: {n_sections} §9 citation(s), {n_quotes} RESULTS heading(s)")
        for q in unresolved:
            problems += 1
            print(f"  RESULTS.md quote resolves nowhere: {q!r}")
        for i in long_lines:
            print(f"  line {i} now longer than {LINE_LIMIT} characters")
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                       str(path), str(path) + " (rewritten)"))
        if args.write and after != before:
            path.write_text(after)
    if rw.unmapped:
        problems += 1
        print(f"not in {args.tsv}: {sorted(set(rw.unmapped))}")
    mode = "rewritten" if args.write else "would be rewritten (dry run)"
    print(f"total: {totals[0]} §9 citation(s), {totals[1]} RESULTS heading(s) {mode}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
