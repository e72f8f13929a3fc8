"""The README's Python examples run as written (a user copies them first)."""

import re
from pathlib import Path

import jax
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys):
    # README code is user code: it runs under JAX's default ("standard") dtype promotion, not the suite's
    # strict mode (optax.adam itself is not strict-clean in optax 0.2.8).
    namespace: dict = {"__name__": f"readme_block_{index}"}
    with jax.numpy_dtype_promotion("standard"):
        exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)
    out = capsys.readouterr().out
    # Every block that prints states its expected output in a trailing "# prints: ..." comment.
    expected = re.findall(r"#\s*prints:\s*(.+)", BLOCKS[index])
    for pattern in expected:
        assert re.search(pattern.strip(), out), (pattern, out)
