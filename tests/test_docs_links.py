"""Every relative link between README.md and docs/*.md resolves: the file exists and, for ``#anchor``, so does
the heading, by GitHub's slug rules. Links inside code (fenced blocks, inline spans) are not links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", flags=re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", flags=re.M)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading (github-slugger): its text, lower case, punctuation dropped, each space a
    hyphen. Letters, digits, ``_`` and ``-`` of any script stay.

    >>> github_slug("Weight sharing: `--strategy supernet`")
    'weight-sharing---strategy-supernet'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a Markdown text's headings; a repeated heading gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(text: str) -> list[str]:
    """The targets of a Markdown text's links and images, outside code."""
    return LINK.findall(INLINE_CODE.sub("", FENCE.sub("", text)))


def broken_links(pages: list[Path]) -> list[str]:
    """``page: target (why)`` for each relative link in ``pages`` whose file or heading does not exist."""
    broken = []
    for page in pages:
        for target in links(page.read_text()):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target} (no file {file})")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                broken.append(f"{page.name}: {target} (no heading #{anchor} in {file.name})")
    return broken


def test_every_link_between_the_readme_and_docs_resolves():
    assert len(PAGES) > 10
    broken = broken_links(PAGES)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links((ROOT / "README.md").read_text())}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


def test_a_missing_file_or_heading_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# B page\n\n## Weight sharing: `--strategy supernet`\n\n## Twice\n\n"
                                              "## Twice\n\n```bash\n# not a heading\n```\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Top\n\n[ok](docs/b.md) [ok](docs/b.md#weight-sharing---strategy-supernet) [ok](docs/b.md#twice-1)\n"
        "[ok](#top) ![ok](docs/b.md) [web](https://example.org/x.md#nope) `[code](missing.md)`\n"
        "[gone](docs/missing.md) [no heading](docs/b.md#nope) [comment](docs/b.md#not-a-heading) [self](#nope)\n"
        "```text\n[in a block](missing.md)\n```\n")
    assert broken_links([readme]) == [
        f"README.md: docs/missing.md (no file {tmp_path / 'docs' / 'missing.md'})",
        "README.md: docs/b.md#nope (no heading #nope in b.md)",
        "README.md: docs/b.md#not-a-heading (no heading #not-a-heading in b.md)",
        "README.md: #nope (no heading #nope in README.md)",
    ]


def test_github_slugs():
    assert github_slug("3. Data where it matters: Fashion-MNIST") == "3-data-where-it-matters-fashion-mnist"
    assert github_slug("The supernet's recipe: residual blocks") == "the-supernets-recipe-residual-blocks"
    assert github_slug("`--metric balanced`") == "--metric-balanced"
    assert github_slug("Proxy × resolution, ρ") == "proxy--resolution-ρ"
