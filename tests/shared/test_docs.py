"""The documentation stays short where users start, and every reference in it resolves.

README.md is for users (what cnnlab is, how to run it); the lab book (tuning rounds,
benchmarks, design) lives in docs/. Code comments cite docs/ files, never README sections.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# "docs/presets.md, round 4" or "docs/presets.md (round 2)": a docs file and a section in it.
DOCS_CITATION = re.compile(r"docs/([\w-]+\.md)(?:,\s*|\s*\()([\w -]{1,40})\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def headings(path: Path) -> list[str]:
    return [re.sub(r"^#+\s*", "", line) for line in prose_lines(path) if line.startswith("#")]


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(path):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def source_files() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


def test_readme_stays_a_short_user_guide():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; move details to docs/ (at most {README_MAX_LINES})"
    )


def test_the_documentation_files_exist():
    missing = [p.name for p in markdown_files() if not p.is_file()]
    assert not missing


def test_every_relative_link_points_to_an_existing_file_and_heading():
    broken = []
    for doc in markdown_files():
        for line in prose_lines(doc):
            for target in MARKDOWN_LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                    continue
                path_part, _, anchor = target.partition("#")
                linked = (doc.parent / path_part).resolve() if path_part else doc
                if not linked.exists():
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_code_cites_docs_not_readme_sections():
    citing_readme = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in source_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "README" in line
    ]
    assert not citing_readme, "cite docs/*.md instead of the README:\n" + "\n".join(citing_readme)


def test_docs_cited_in_code_exist_with_the_cited_section():
    wrong = []
    tests = [p for p in sorted((ROOT / "tests").rglob("*.py")) if p != Path(__file__).resolve()]
    for path in [*source_files(), *tests]:
        # Comments and docstrings wrap: join lines and drop the comment markers first.
        text = re.sub(r"\s*\n\s*#?\s*", " ", path.read_text(encoding="utf-8"))
        for name, section in DOCS_CITATION.findall(text):
            doc = ROOT / "docs" / name
            if not doc.is_file():
                wrong.append(f"{path.relative_to(ROOT)}: docs/{name} does not exist")
            elif not any(section.lower() in h.lower() for h in headings(doc)):
                wrong.append(f"{path.relative_to(ROOT)}: docs/{name} has no section {section!r}")
    assert not wrong, "\n".join(wrong)
