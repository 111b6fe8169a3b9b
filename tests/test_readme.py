"""The README's main example runs as written (with fewer epochs)."""

import os
import re

import pytest

from tests.conftest import REPO_ROOT


def _python_blocks():
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        return re.findall(r"```python\n(.*?)```", handle.read(), flags=re.S)


@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_use_on_your_own_data_example_runs(capsys):
    block = next(b for b in _python_blocks() if "build_gblend_model(branches" in b)
    code = block.replace("epochs=30", "epochs=5")  # warm-up 2 + one super-epoch
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["probs"].shape == (600, 5)
    assert sum(namespace["model"].get_blend_weights().values()) == pytest.approx(1.0)
