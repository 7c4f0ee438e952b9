"""The documentation: README.md as a short front page, docs/ as the reference, links that resolve.

Checks every relative link of README.md and docs/*.md (``[text](path)`` and ``[text](path#anchor)``,
anchors as GitHub slugs of the target's headings), the doc pointers in the Dockerfile and
examples/, that every option of every command is documented in docs/, and that the README states
the Flink and Beam versions scripts/flink.sh and setup.py use.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import apache_beam
import pytest

from genreflow import cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link text kept, lower case, punctuation dropped, spaces -> '-'."""
    text = _LINK.sub(lambda m: m.group(1), heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    targets = [m.group(2) for m in _LINK.finditer(_prose(page.read_text()))]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # drop http:, mailto:, ...


def unresolved(source: Path, target: str, *, base: Path) -> str | None:
    """Why ``target`` (relative to ``base``) does not resolve, or None when it does."""
    path, _, anchor = target.partition("#")
    file = (base / path).resolve() if path else source
    if not file.exists():
        return f"{source}: {target}: {file} does not exist"
    if anchor and file.suffix == ".md" and anchor not in anchors(file):
        return f"{source}: {target}: no heading with anchor #{anchor} in {file.name}"
    return None


def test_github_slug_matches_githubs_rules():
    assert github_slug("Catalogs of 10^6-10^8 tracks") == "catalogs-of-106-108-tracks"
    assert github_slug("Memory and workers: the knobs") == "memory-and-workers-the-knobs"
    assert github_slug("`train` options") == "train-options"
    assert github_slug("See [the demo](demo.md) now") == "see-the-demo-now"


def test_relative_links_are_found_outside_code_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Top\n[a](x.md) `[b](y.md)` [web](https://example.org)\n```\n[c](z.md)\n```\n## Top\n")
    assert relative_links(page) == ["x.md"]
    assert anchors(page) == {"top", "top-1"}
    assert unresolved(page, "x.md", base=tmp_path) is not None  # x.md does not exist
    assert unresolved(page, "#top-1", base=tmp_path) is None
    assert unresolved(page, "p.md#nowhere", base=tmp_path) is not None


def test_readme_is_a_front_page_of_at_most_200_lines():
    n = len(README.read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move reference material into docs/"


def test_docs_exist_and_readme_links_every_page():
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    for name in ("featurize.md", "train.md", "label.md", "running-at-scale.md", "benchmarks.md", "limits.md"):
        assert name in pages
    linked = {t.partition("#")[0] for t in relative_links(README)}
    missing = [name for name in pages if f"docs/{name}" not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    assert links, f"{page.name} links nowhere"
    problems = [p for t in links if (p := unresolved(page, t, base=page.parent))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", ["Dockerfile", "examples/crontab.txt", "examples/airflow_dag.py"])
def test_doc_pointers_in_dockerfile_and_examples_resolve(source):
    path = REPO / source
    pointers = re.findall(r"(?:README\.md|docs/[\w./-]+\.md)(?:#[\w-]+)?", path.read_text())
    problems = [p for t in pointers if (p := unresolved(path, t, base=REPO))]
    assert not problems, "\n".join(problems)


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(argv)
        except SystemExit as e:
            assert e.code in (0, None), f"genreflow {' '.join(argv)} exited {e.code}"
    return out.getvalue()


@pytest.mark.parametrize("command", [None, *cli.SUBCOMMANDS])
def test_every_option_of_every_command_is_documented(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no help line wrapped inside an option name
    text = _help([command, "--help"] if command else ["--help"])
    # dash spellings only: --num_shards is an alias of --num-shards; --help is argparse's own
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*(?![\w-])", text)) - {"--help"}
    assert options, text
    docs = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", docs))
    assert not missing, f"genreflow {command or ''}: options not documented in docs/: {missing}"


def test_readme_states_the_flink_and_beam_versions_in_use():
    """What tests/test_flink.py checks against a running cluster, checked here without one."""
    script = (REPO / "scripts" / "flink.sh").read_text()
    flink = re.search(r'FLINK_VERSION="\$\{GENREFLOW_FLINK_VERSION:-([\d.]+)\}"', script).group(1)
    java = re.search(r'BEAM_JAVA_VERSION="\$\{GENREFLOW_BEAM_JAVA_VERSION:-([\d.]+)\}"', script).group(1)
    readme = " ".join(README.read_text().split())
    assert f"Beam Java {java} job server driving the Beam Python {apache_beam.__version__} SDK" in readme
    assert f"Flink {flink}" in readme
