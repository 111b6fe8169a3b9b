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
EXPORT = (
    "from keras_gblend import export_saved_model  # SavedModel export: needs TensorFlow"
    '\n\nexport_saved_model(model, "served/")'
)


def readme_example():
    """The first Python block under `HEADING` in README.md."""
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        text = handle.read()
    assert HEADING in text, f"README.md lost its heading {HEADING!r}"
    section = text.split(HEADING, 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def _without_export(code):
    """The block without its export line where TensorFlow is absent (the
    SavedModel export needs it; tests/test_readme.py runs it on TensorFlow)."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return code.replace(EXPORT, "")
    return code


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_use_it_on_your_own_data_runs_on_this_backend(tmp_path, monkeypatch):
    code = readme_example()
    assert "epochs=30" in code and EXPORT in code
    monkeypatch.chdir(tmp_path)  # The block writes served/.
    namespace = {}
    code = _without_export(code.replace("epochs=30", "epochs=5"))
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    model, test = namespace["model"], namespace["test"]
    probs = model.predict_output(test.x)
    assert probs.shape == (len(test.y), 10) and np.all(np.isfinite(probs))
    assert namespace["accuracy"] == np.mean(probs.argmax(-1) == test.y)
    weights = model.get_blend_weights()
    # The default callback estimated once (after epoch 5) and moved the
    # weights from uniform (all 1 at the default scale, the largest at 1); the
    # fused head keeps at least its uniform share, 1/3 of the weights' sum of 1.
    assert max(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert min(weights.values()) < 1.0 - 1e-3
    assert weights["fused"] >= 1 / 3 - 1e-6
    assert model.output_mode in ("fused", "mean", "weighted")
