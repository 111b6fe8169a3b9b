"""G-Blend's mechanism on the Keras backend in use (TensorFlow, JAX or PyTorch).

Run by `make test` (TensorFlow) and `make test-backends` (`KERAS_BACKEND=jax` and
`KERAS_BACKEND=torch`, in environments without TensorFlow).
"""

import keras
import numpy as np
import pytest

from tests.helpers import cross_entropy, toy_data, toy_model

BACKEND = keras.backend.backend()


def _weights(model, layer):
    return [np.array(w) for w in model.get_layer(layer).get_weights()]


def _max_change(before, after):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(before, after))


@pytest.mark.parametrize("weight_a", [0.0, 0.3])
def test_zero_weight_freezes_the_head_and_the_branch_learns_through_fused(weight_a):
    model = toy_model()
    model.set_blend_weights({"a": weight_a, "b": 0.3, "fused": 0.4})
    before = {n: _weights(model, n) for n in ("a_head", "a_encoder", "b_head")}
    model.fit(*toy_data(), batch_size=8, epochs=2, shuffle=False, verbose=0)
    change = {n: _max_change(w, _weights(model, n)) for n, w in before.items()}
    if weight_a == 0.0:
        # Plain SGD: a head with weight 0 gets exactly zero gradient.
        assert change["a_head"] == 0.0
    else:
        assert change["a_head"] > 1e-4
    # The shared branch still learns through the fused head; so does head b.
    assert change["a_encoder"] > 1e-4
    assert change["b_head"] > 1e-4


def test_loss_is_the_blend_weighted_sum_of_head_losses_after_each_assign():
    model = toy_model()
    x, y = toy_data()
    probs = model.predict(x, batch_size=16, verbose=0)
    head_loss = {h: cross_entropy(probs[h], y) for h in model.head_names}
    for weights in ({"a": 0.2, "b": 0.3, "fused": 0.5}, {"a": 0, "b": 0, "fused": 1}):
        model.set_blend_weights(weights)
        loss = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
        expected = sum(weights[h] * head_loss[h] for h in model.head_names)
        assert loss["loss"] == pytest.approx(expected, rel=1e-5)


class _CountCalls(keras.layers.Layer):
    """Identity layer counting how often its Python `call` runs."""

    calls = 0

    def call(self, inputs):
        _CountCalls.calls += 1
        return inputs


class _ReweightEachEpoch(keras.callbacks.Callback):
    """Assigns new blend weights after every epoch, as GBlendCallback does."""

    def __init__(self):
        super().__init__()
        self.calls, self.train_functions = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(_CountCalls.calls)
        self.train_functions.append(self.model.train_function)
        w = 0.1 + 0.2 * (epoch % 2)
        self.model.set_blend_weights({"a": w, "b": 0.5 - w, "fused": 0.5})


def test_assigning_weights_does_not_retrace_the_train_step():
    _CountCalls.calls = 0
    model = toy_model(fused_layer=_CountCalls())
    callback = _ReweightEachEpoch()
    history = model.fit(
        *toy_data(),
        batch_size=8,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[callback],
    )
    per_epoch = np.diff(callback.calls).tolist()
    assert callback.calls[0] >= 1  # the counter sees the first trace (or step)
    if BACKEND in ("tensorflow", "jax"):
        # Python code inside the compiled step runs only while tracing: once,
        # in the first epoch; the three re-weightings trace nothing.
        assert per_epoch == [0, 0, 0], callback.calls
    else:
        # PyTorch runs the step eagerly (nothing is traced or compiled): the
        # layer runs once per step, 2 steps per epoch, whatever the weights.
        assert BACKEND == "torch" and per_epoch == [2, 2, 2], callback.calls
    # One train function for the whole run, never rebuilt.
    assert all(f is callback.train_functions[0] for f in callback.train_functions)
    # ... and it read the new weights: the loss jumps when they change.
    assert len(set(np.round(history.history["loss"], 6))) == 4
