"""Every Python block of the README (```python and ```py fences) runs as pasted; the
Lightning one when Lightning is installed (the test extra installs it)."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```(?:python|py)\n(.*?)^```", README.read_text(), flags=re.M | re.S)


def test_the_readme_has_python_blocks_in_both_fences():
    fences = re.findall(r"^```(python|py)\n", README.read_text(), flags=re.M)
    assert len(BLOCKS) == len(fences) >= 2 and {"python", "py"} <= set(fences)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_block_runs_as_pasted(block, tmp_path, monkeypatch):
    if "import lightning" in block and importlib.util.find_spec("lightning") is None:
        pytest.skip("Lightning is not installed (pip install 'tbptt[lightning]')")
    monkeypatch.chdir(tmp_path)  # whatever a block writes stays out of the checkout
    with warnings.catch_warnings():
        if "import lightning" in block:  # Lightning's advice on workers and loggers
            warnings.simplefilter("ignore")
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
