"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement.

A baseline to compare G-Blend with: a late-fusion model (modality encoders, their
features concatenated, one linear softmax classifier) whose training slows down
the encoder of the modality that currently dominates (Peng et al., CVPR 2022).
At every training step, for each modality `u`:

* score `s_u`: the sum over the batch of the softmax probability of the true
  class computed from `u`'s share of the fused linear layer (its rows of the
  kernel plus `bias / K`);
* ratio `rho_u = s_u / mean_{j != u} s_j` (for K = 2 the paper's `s_a / s_v`);
* coefficient `k_u = 1 - tanh(alpha * rho_u)` if `rho_u > 1`, else 1 (paper,
  Eq. 10); `u`'s encoder gets gradient `k_u * g_u` (the fused layer is not
  modulated);
* GE (generalisation enhancement): Gaussian noise with the standard deviation
  of the unmodulated gradient (per variable) is added to every encoder
  variable's gradient, in every step where modulation is on.

The coefficients use `keras.ops` only: gradients are scaled with
`x * k + stop_gradient(x) * (1 - k)` on the features, so OGM without GE runs in
the default `train_step` of every backend. GE needs the gradients themselves and
has a TensorFlow `train_step`. See `docs/ogm_ge.md` for each choice made where
the paper and the official code differ.

References:
    Peng, Wei, Deng, Wang, Hu. "Balanced Multimodal Learning via On-the-fly
    Gradient Modulation." CVPR 2022. https://arxiv.org/abs/2203.15332
"""

from __future__ import annotations

import keras
from keras import ops

from keras_gblend.model.heads import FUSED, check_branch, check_modalities


def ogm_scores(features, kernel, bias, labels):
    """Per-modality scores: summed true-class probability of each modality's share.

    Args:
        features: list of K feature tensors `(batch, d_k)`, in the order their
            concatenation enters the fused layer.
        kernel: the fused layer's kernel `(sum_k d_k, num_classes)`.
        bias: the fused layer's bias `(num_classes,)`; each modality gets `1/K`.
        labels: integer labels `(batch,)` or `(batch, 1)`.

    Returns:
        A float tensor `(K,)`: `s_k = sum_i softmax(f_k W_k + b / K)[i, y_i]`.

    Example:
        >>> import numpy as np
        >>> f = [np.ones((2, 1), "float32"), np.zeros((2, 1), "float32")]
        >>> w = np.array([[9.0, 0.0], [0.0, 0.0]], "float32")
        >>> s = ogm_scores(f, w, np.zeros(2, "float32"), np.array([0, 0]))
        >>> [round(float(v), 3) for v in keras.ops.convert_to_numpy(s)]
        [2.0, 1.0]
    """
    num_classes = kernel.shape[-1]
    onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), num_classes)
    scores, start = [], 0
    for feature in features:
        width = feature.shape[-1]
        logits = ops.matmul(feature, kernel[start : start + width])
        probs = ops.softmax(logits + bias / len(features), axis=-1)
        scores.append(ops.sum(probs * ops.cast(onehot, probs.dtype)))
        start += width
    return ops.stack(scores)


def ogm_coefficients(scores, alpha):
    """Gradient coefficients from the scores (paper, Eq. 9-10; K > 2 generalised).

    Args:
        scores: tensor `(K,)` of per-modality scores, K >= 2.
        alpha: modulation strength, > 0.

    Returns:
        A tensor `(K,)`: `1 - tanh(alpha * rho_k)` where `rho_k > 1`, else 1, with
        `rho_k = s_k / mean_{j != k} s_j`.

    Example:
        >>> import numpy as np
        >>> k = ogm_coefficients(np.array([3.0, 1.0]), alpha=0.5)
        >>> [round(float(v), 4) for v in keras.ops.convert_to_numpy(k)]
        [0.0949, 1.0]
    """
    scores = ops.convert_to_tensor(scores, "float32")
    num = scores.shape[0]
    others = (ops.sum(scores) - scores) / (num - 1)
    ratio = scores / ops.maximum(others, 1e-12)
    return ops.where(ratio > 1.0, 1.0 - ops.tanh(alpha * ratio), 1.0)


def scale_gradient(x, scale):
    """Identity in the forward pass; multiplies the gradient flowing into `x`.

    Example:
        >>> float(scale_gradient(keras.ops.ones(()), 0.3))
        1.0
    """
    return x * scale + ops.stop_gradient(x) * (1.0 - scale)


@keras.saving.register_keras_serializable(package="keras_gblend")
class OGMGEModel(keras.Model):
    """Late-fusion classifier trained with OGM or OGM-GE inside `model.fit`.

    Compile it with an optimizer and metrics but no `loss`: the loss is the
    cross-entropy of the fused head, computed by the model. `predict` returns the
    fused softmax probabilities. Each epoch's logs hold `coeff_<modality>`, the
    mean modulation coefficient (1 = not slowed down).

    Args:
        branches: dict from modality name (at least two) to a functional Keras
            model with one input and a rank-2 feature output.
        num_classes: number of classes (>= 2).
        alpha: modulation strength `alpha` of Eq. 10 (official code: 0.1 on
            VGGSound, 0.8 on CREMA-D).
        ge: add the GE noise (TensorFlow backend); False gives plain OGM.
        modulation_epochs: `(first, last)` epochs (0-based, inclusive) where
            modulation and noise are on, or None for every epoch. Needs the
            `OGMSchedule` callback, which `fit` does not add by itself.
        seed: seed of the GE noise.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Raises:
        ValueError: if an argument is invalid.
        NotImplementedError: if `ge=True` on a backend other than TensorFlow.

    Example:
        >>> import numpy as np
        >>> branches = {
        ...     m: keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
        ...     for m in ("a", "b")
        ... }
        >>> model = OGMGEModel(branches, num_classes=2, alpha=0.5, seed=0)
        >>> model.compile(optimizer="sgd", metrics=["accuracy"])
        >>> x = {m: np.ones((8, 3), "float32") for m in ("a", "b")}
        >>> logs = model.fit(x, np.zeros(8), epochs=1, verbose=0).history
        >>> sorted(logs)
        ['accuracy', 'coeff_a', 'coeff_b', 'loss']

    References:
        Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient
        Modulation", CVPR 2022.
    """

    def __init__(
        self,
        branches,
        num_classes,
        *,
        alpha=0.1,
        ge=True,
        modulation_epochs=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(branches, dict):
            raise ValueError(
                f"`branches` must be a dict from modality name to model. "
                f"Received {type(branches).__name__}."
            )
        self.modalities = check_modalities(tuple(branches))
        for name, branch in branches.items():
            check_branch(name, branch)
        if int(num_classes) < 2:
            raise ValueError(f"`num_classes` must be >= 2. Received {num_classes}.")
        if not alpha > 0:
            raise ValueError(f"`alpha` must be > 0. Received {alpha}.")
        if ge and keras.backend.backend() != "tensorflow":
            raise NotImplementedError(
                "`ge=True` needs the TensorFlow backend (it edits gradients in "
                f"`train_step`). Received backend {keras.backend.backend()!r}; "
                "use `ge=False` (OGM) there."
            )
        self.branches = dict(branches)
        self.num_classes = int(num_classes)
        self.alpha = float(alpha)
        self.ge = bool(ge)
        self.modulation_epochs = modulation_epochs
        self.fused_head = keras.layers.Dense(self.num_classes, name=f"{FUSED}_head")
        self.modulation_on = self.add_weight(
            shape=(), initializer="ones", trainable=False, name="modulation_on"
        )
        self.coefficient_trackers = {
            m: keras.metrics.Mean(name=f"coeff_{m}") for m in self.modalities
        }
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._step = {}

    def call(self, inputs, training=None):
        features = [
            self.branches[m](inputs[m], training=training) for m in self.modalities
        ]
        # Kept for `compute_loss`, which runs in the same trace as this call.
        self._step["features"] = features
        logits = self.fused_head(ops.concatenate(features, axis=-1))
        return ops.softmax(logits, axis=-1)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Compiles without a `loss` (the model computes its own).

        Raises:
            ValueError: if `loss` is given.
        """
        if loss is not None:
            raise ValueError(
                "`loss` must be None: OGMGEModel trains with the fused head's "
                f"cross-entropy. Received {loss!r}."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        features = self._step["features"]
        kernel, bias = self.fused_head.kernel, self.fused_head.bias
        if training:
            scores = ogm_scores(
                [ops.stop_gradient(f) for f in features], kernel, bias, y
            )
            coefficients = ogm_coefficients(scores, self.alpha)
            on = ops.cast(self.modulation_on, coefficients.dtype)
            coefficients = on * coefficients + (1.0 - on)
            self._step["coefficients"] = coefficients
            for i, m in enumerate(self.modalities):
                self.coefficient_trackers[m].update_state(coefficients[i])
            features = [
                scale_gradient(f, coefficients[i]) for i, f in enumerate(features)
            ]
        logits = self.fused_head(ops.concatenate(features, axis=-1))
        losses = keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True
        )
        if sample_weight is not None:
            losses = losses * ops.reshape(sample_weight, ops.shape(losses))
        return ops.mean(losses)

    def train_step(self, data):
        if not self.ge:
            return super().train_step(data)
        import tensorflow as tf

        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight, training=True)
            # Keras's own loss tracker (as in its TensorFlow `train_step`).
            self._loss_tracker.update_state(loss, sample_weight=tf.shape(y)[0])
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = self._enhance(tape.gradient(scaled_loss, variables), variables)
        self.optimizer.apply(gradients, variables)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _enhance(self, gradients, variables):
        """Adds GE noise to each encoder gradient (std of the unmodulated one)."""
        coefficients = self._step["coefficients"]
        owner = {}
        for i, m in enumerate(self.modalities):
            for v in self.branches[m].trainable_variables:
                owner[id(v)] = i
        out = []
        for gradient, variable in zip(gradients, variables):
            i = owner.get(id(variable))
            if gradient is None or i is None:
                out.append(gradient)
                continue
            std = ops.std(gradient) / coefficients[i]
            noise = keras.random.normal(ops.shape(gradient), seed=self.seed_generator)
            out.append(gradient + ops.cast(self.modulation_on, std.dtype) * std * noise)
        return out

    def get_config(self):
        raise NotImplementedError(
            "OGMGEModel is a training-time baseline: save its weights with "
            "`save_weights`, not the whole model."
        )


class OGMSchedule(keras.callbacks.Callback):
    """Turns an `OGMGEModel`'s modulation on only in its `modulation_epochs`.

    Example:
        >>> OGMSchedule().__class__.__name__
        'OGMSchedule'
    """

    def on_epoch_begin(self, epoch, logs=None):
        window = self.model.modulation_epochs
        on = window is None or window[0] <= epoch <= window[1]
        self.model.modulation_on.assign(float(on))
