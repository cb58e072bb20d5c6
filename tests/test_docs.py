"""The README and the docs: short enough to read, every link and anchor resolving, facts true.

Links are checked the way GitHub renders them: a relative path must exist in the checkout,
and a ``#fragment`` must be the slug of a heading in the target Markdown file (lowercased,
punctuation dropped, spaces to hyphens, ``-1``, ``-2`` for repeats). Code blocks and code
spans are not Markdown, so neither their "headings" nor their "links" count.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from wirelab import exitcodes

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CHANGELOG = REPO / "CHANGELOG.md"
#: The README is read in five minutes; the details live in docs/.
README_MAX_BYTES = 12_000

_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


#: Folders of a checkout that hold no page of the project's own (tools, runs, builds).
_NOT_PAGES = {"reports", "build", "dist", "node_modules"}


def markdown_files() -> list[Path]:
    """Every Markdown page of the project: the README, the changelog, docs/ and the READMEs
    beside the code and the recorded results."""
    return sorted(
        path
        for path in REPO.rglob("*.md")
        if not any(
            part.startswith(".") or part in _NOT_PAGES or part.endswith(".egg-info")
            for part in path.relative_to(REPO).parts[:-1]
        )
    )


def _prose_lines(text: str, *, code_spans: bool = False) -> list[str]:
    """The lines outside fenced code blocks; code spans dropped unless ``code_spans`` (a
    heading's text uses them, a link inside one is no link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line if code_spans else _CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (before de-duplication)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and _, as GitHub does
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, repeats numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose_lines(path.read_text(), code_spans=True):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file (inline links, images and reference definitions)."""
    found = []
    for line in _prose_lines(path.read_text()):
        found += _INLINE_LINK.findall(line)
        definition = _REFERENCE_DEFINITION.match(line)
        if definition:
            found.append(definition.group(1))
    return found


def broken_links(path: Path) -> list[str]:
    """Each relative link or #anchor of ``path`` that does not resolve, with the reason."""
    problems = []
    for target in links(path):
        if _EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{path.name}: {target}: no such file")
            continue
        if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
            problems.append(f"{path.name}: {target}: no heading with that anchor")
    return problems


def test_the_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move details into docs/"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## The `--flag` option, again\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "[ok](other.md#the---flag-option-again) [ok](#title) [ext](https://example.com/x)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) ![img](pic.png)\n"
        "`[not a link](nope.md)`\n\n```\n[in a fence](nope2.md)\n# not a heading\n```\n"
        "[fenced heading](#not-a-heading)\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md: no such file",
        "page.md: other.md#nowhere: no heading with that anchor",
        "page.md: pic.png: no such file",
        "page.md: #not-a-heading: no heading with that anchor",
    ]


def test_anchors_follow_githubs_slugs() -> None:
    assert slug("Run on Kubernetes") == "run-on-kubernetes"
    assert slug("`wirelab targets serve`") == "wirelab-targets-serve"
    assert slug("The pre-flight check: exit 2 before anything starts") == (
        "the-pre-flight-check-exit-2-before-anything-starts"
    )
    assert slug("Files, and [links](x.md)!") == "files-and-links"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert unlinked == [], "add these pages to the README's Documentation table"


def test_the_readmes_exit_codes_are_wirelabs() -> None:
    rows = re.findall(r"^\| (\d) \| `?([A-Z-]+|—)`? \|", README.read_text(), re.MULTILINE)
    defined = {
        value
        for name, value in vars(exitcodes).items()
        if name.startswith("EXIT_") and isinstance(value, int)
    }
    assert sorted(int(code) for code, _ in rows) == sorted(defined)


def test_the_changelog_has_an_unreleased_section_and_the_current_version() -> None:
    text = CHANGELOG.read_text()
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert version.group(1) in headings


def test_the_pages_checked_include_the_readme_the_changelog_and_docs() -> None:
    checked = {path.relative_to(REPO).as_posix() for path in markdown_files()}
    assert {"README.md", "CHANGELOG.md", "docs/runs.md", "benchmarks/README.md"} <= checked
    assert not any(name.startswith(".venv/") for name in checked)
