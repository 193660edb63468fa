"""The README's SDK example is examples/sdk_app.py, word for word (it runs as written)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _readme_block(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one python block in '{section}', found {len(blocks)}"
    return blocks[0]


def test_readme_sdk_example_is_the_example_file() -> None:
    assert _readme_block("Embedding the device SDK") == (ROOT / "examples/sdk_app.py").read_text()


def test_sdk_example_runs_as_a_script_without_top_level_await() -> None:
    source = (ROOT / "examples/sdk_app.py").read_text()
    compile(source, "sdk_app.py", "exec")  # top-level await is a SyntaxError here
    assert 'if __name__ == "__main__":' in source and "asyncio.run(main(" in source
