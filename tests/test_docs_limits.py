"""The documentation's size limits (issue #33): README.md at most 200 lines, docs/*.md under
100,000 bytes in all, no page over 30,000 bytes."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README_LINES, DOCS_BYTES, PAGE_BYTES = 200, 100_000, 30_000


def test_readme_lines() -> None:
    lines = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_LINES, f"README.md has {lines} lines, more than {README_LINES}"


def test_docs_sizes() -> None:
    sizes = {page.name: page.stat().st_size for page in sorted((REPO / "docs").glob("*.md"))}
    total = sum(sizes.values())
    listing = ", ".join(f"{name} {size:,}" for name, size in sorted(sizes.items(), key=lambda item: -item[1]))
    assert total <= DOCS_BYTES, f"docs/*.md hold {total:,} bytes, more than {DOCS_BYTES:,}: {listing}"
    large = {name: size for name, size in sizes.items() if size > PAGE_BYTES}
    assert not large, f"pages over {PAGE_BYTES:,} bytes: {large}"
