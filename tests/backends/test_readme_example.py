"""The README's "Use it on your own data" example runs under this backend.

The block is taken from README.md by its heading, unchanged but for fewer
epochs (warm-up 2 + one super-epoch). `make test` runs it on TensorFlow,
`make test-backends` on JAX and PyTorch (without TensorFlow installed).
"""

import os
import re

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

HEADING = "## Use it on your own data"


def readme_example():
    """The first Python block under `HEADING` in README.md."""
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        text = handle.read()
    assert HEADING in text, f"README.md lost its heading {HEADING!r}"
    section = text.split(HEADING, 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_use_it_on_your_own_data_runs_on_this_backend():
    code = readme_example()
    assert "epochs=30" in code
    namespace = {}
    exec(compile(code.replace("epochs=30", "epochs=5"), "README.md", "exec"), namespace)  # noqa: S102
    model = namespace["model"]
    assert namespace["probs"].shape == (600, 5)
    weights = model.get_blend_weights()
    # The callback estimated once (after epoch 5) and moved the weights.
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(abs(w - 1 / 3) for w in weights.values()) > 1e-3
    assert min(weights.values()) >= 0.1 - 1e-6  # min_weight=0.1 in the README
    assert np.all(np.isfinite(namespace["probs"]))
