"""The README's "Use it on your own data" example runs under this backend.

The block is taken from README.md by its heading, unchanged but for fewer
epochs (`README_EPOCHS`, 6, instead of 30) and, without TensorFlow, its
SavedModel export: the `readme_first_block` fixture (tests/conftest.py), which
tests/test_readme.py shares under `make test` on TensorFlow; `make
test-backends` runs it on JAX and PyTorch (without TensorFlow installed).
"""

import numpy as np
import pytest

from tests.helpers import README_EXPORT, readme_section_block


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:G-Blend at epoch")
def test_use_it_on_your_own_data_runs_on_this_backend(readme_first_block):
    code = readme_section_block("Use it on your own data")
    assert "epochs=30" in code and README_EXPORT in code
    namespace = readme_first_block  # The block, run with README_EPOCHS (6) epochs.
    model, test = namespace["model"], namespace["test"]
    probs = model.predict_output(test.x)
    assert probs.shape == (len(test.y), 10) and np.all(np.isfinite(probs))
    assert namespace["accuracy"] == np.mean(probs.argmax(-1) == test.y)
    weights = model.get_blend_weights()
    # The default callback estimated (after epoch 5) and moved the
    # weights from uniform (all 1 at the default scale, the largest at 1); the
    # fused head keeps at least its uniform share, 1/3 of the weights' sum of 1.
    assert max(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert min(weights.values()) < 1.0 - 1e-3
    assert weights["fused"] >= 1 / 3 - 1e-6
    assert model.output_mode in ("fused", "mean", "weighted")
