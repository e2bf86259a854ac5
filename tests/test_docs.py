"""The manual stays in step with the code: every relative link resolves, every study key and every command
is documented."""

import re
from pathlib import Path

import pytest

from w2sjax import cli
from w2sjax.studies.config import CONFIG_KEYS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target) or not re.search(r"[./]", target):
            continue  # external, an anchor, or not a path (e.g. "T[r Y](x)" in a formula)
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_readme_links_nothing_outside_the_repository():
    assert "../shared" not in (ROOT / "README.md").read_text()
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_every_study_key_and_command_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [k for k in CONFIG_KEYS if f"`{k}`" not in text]
    assert not missing, f"docs/cli.md does not document {missing}"
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    readme = (ROOT / "README.md").read_text()
    for name in commands:
        assert f"w2sjax {name}" in readme, f"README's command list lacks `w2sjax {name}`"
