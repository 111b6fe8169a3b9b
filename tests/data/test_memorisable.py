"""`data.synthetic.memorisable_modality`: the knob does what it claims."""

import numpy as np
import pytest

from keras_gblend.data.synthetic import memorisable_modality


def _nearest_mean_accuracy(signal, seed=0):
    """Accuracy on unseen examples of the class means of 300 training ones."""
    y = np.arange(600) % 10
    x = memorisable_modality(y, signal=signal, dim=256, seed=seed)
    means = np.stack([x[:300][y[:300] == c].mean(0) for c in range(10)])
    guess = np.argmin(((x[300:, None, :] - means) ** 2).sum(-1), axis=1)
    return float(np.mean(guess == y[300:]))


def test_unseen_accuracy_rises_along_the_knob_from_chance():
    accuracies = [_nearest_mean_accuracy(s) for s in (0.0, 2.0, 4.0, 8.0)]
    assert accuracies[0] < 0.2  # Chance is 0.1: the codes carry no class.
    assert accuracies == sorted(accuracies) and accuracies[-1] > 0.9


def test_training_examples_are_memorisable_whatever_the_signal():
    # Fewer examples than dimensions: a linear map fits every training label,
    # even at signal 0, where nothing generalises.
    y = np.arange(200) % 10
    x = memorisable_modality(y, signal=0.0, dim=256)
    coef, *_ = np.linalg.lstsq(x, np.eye(10)[y], rcond=None)
    assert np.mean(np.argmax(x @ coef, -1) == y) == 1.0


def test_codes_are_fresh_per_example_and_seeded():
    y = np.zeros(4, int)
    a = memorisable_modality(y, signal=1.0, dim=8, seed=3)
    assert not np.allclose(a[0], a[1])  # Same class, different codes.
    np.testing.assert_array_equal(a, memorisable_modality(y, signal=1.0, dim=8, seed=3))


def test_bad_knob_is_refused_naming_it():
    with pytest.raises(ValueError, match="`signal` must be >= 0.*signal=-1"):
        memorisable_modality([0, 1], signal=-1)
