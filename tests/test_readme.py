"""The Python examples of README.md and docs/*.md run as written.

Convention: every fenced ```python block runs, in file order, in one namespace per file, in a temporary
working directory; a block directly preceded by the line ``<!-- norun -->`` (signatures, multi-host or GPU-only
snippets) is skipped. Blocks that print are fine; a block that raises fails the test with the block's line.
"""

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NORUN = "<!-- norun -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block not marked ``<!-- norun -->`` on the line before it."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == NORUN:
            continue
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


DOCS = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if p.is_file()]
WITH_CODE = [p for p in DOCS if runnable_blocks(p.read_text())]


def test_block_finder():
    text = "x\n```python\na = 1\n```\n<!-- norun -->\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert runnable_blocks(text) == [(3, "a = 1\n")]


@pytest.mark.parametrize("path", WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in WITH_CODE])
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    for line, code in runnable_blocks(path.read_text()):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
            except Exception as err:  # noqa: BLE001 - report which block failed
                pytest.fail(f"{path.relative_to(ROOT)}, block at line {line}: {type(err).__name__}: {err}")
    assert os.getcwd() == str(tmp_path)
