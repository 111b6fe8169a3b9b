"""`OutputModes`: the `GBlendModel` methods that turn its heads into one prediction.

`GBlendModel` inherits them: `set_output_mode`, `fit_output_weights`,
`predict_output` and `evaluate_outputs`. The combination rule and the weight fit
are `keras_gblend.model.prediction`; this module only feeds them the model's heads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from keras import ops

from keras_gblend.model import prediction


class OutputModes:
    """Output modes of a `GBlendModel` (a mix-in; see `keras_gblend.model.prediction`).

    Attributes:
        output_mode: The mode `predict_output` and the SavedModel's
            `serving_default` use; saved in the model's config.
        output_weights: The `"weighted"` mode's weights (a dict from head name to
            float), or None before `fit_output_weights`; saved in the config.

    Example:

    >>> import keras, numpy as np
    >>> from keras_gblend import build_gblend_model
    >>> model = build_gblend_model({m: keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(3)], name=f"{m}_encoder")
    ...     for m in ("a", "b")}, num_classes=2)
    >>> heldout = ({"a": np.ones((6, 4)), "b": np.zeros((6, 4))}, np.arange(6) % 2)
    >>> round(sum(model.fit_output_weights(heldout).values()), 6)
    1.0
    >>> model.set_output_mode("weighted")
    >>> x = {"a": np.ones((3, 4)), "b": np.ones((3, 4))}
    >>> model.predict_output(x).shape  # weighted combination of the 3 heads
    (3, 2)
    >>> bool(np.allclose(model.predict_output({"a": x["a"]}),  # "b" missing
    ...                  model.predict(x, verbose=0)["a"]))
    True
    >>> sorted(model.evaluate_outputs(x, np.zeros(3))["modes"])
    ['fused', 'mean', 'weighted']
    """

    def set_output_mode(self, mode, weights=None):
        """Chooses how `predict_output` and the export combine the heads.

        The mode and the combination weights are saved with the model (`.keras`
        config) and become the SavedModel's `serving_default`.

        Args:
            mode: `"fused"` (the fused head, the paper's choice; default),
                `"mean"` (every head's probabilities averaged) or `"weighted"`
                (weights fit on `V` by `fit_output_weights`). See
                docs/prediction.md for which to use when.
            weights: Optional combination weights, a mapping from every head
                name to a weight `>= 0` (normalised to sum to 1); default: keep
                the ones already fit.

        Raises:
            ValueError: If `mode` is unknown, `"weighted"` has no weights, or
                `weights` has the wrong keys or values.
        """
        if weights is not None:
            from keras_gblend.model.heads import weights_vector

            values = weights_vector(weights, self.head_names)
            weights = dict(zip(self.head_names, (values / values.sum()).tolist()))
        weights = getattr(self, "output_weights", None) if weights is None else weights
        self.output_mode = prediction.check_mode(mode, weights)
        self.output_weights = weights

    def fit_output_weights(self, heldout, batch_size=256):
        """Fits the `"weighted"` mode's weights on the held-out set `V`.

        Minimises the held-out log-loss of `sum_h w_h p_h` over the simplex
        (`prediction.fit_combination_weights`). Pass `V`, held out from the
        TRAINING data (e.g. the one given to `GBlendCallback`), never test data.
        The mode is unchanged: call `set_output_mode("weighted")` to use them.

        Args:
            heldout: `(x, y)`: a dict of every modality's arrays and labels.
            batch_size: Batch size of the predictions.

        Returns:
            The weights, a dict from head name to float (they sum to 1).

        Raises:
            ValueError: If `heldout` is not an `(x, y)` pair with every modality.
        """
        probs, y = self._heldout_probs(heldout, batch_size)
        self.output_weights = prediction.fit_combination_weights(probs, y)
        return dict(self.output_weights)

    def select_output_mode(self, heldout, batch_size=256):
        """Chooses and sets the output mode with the best accuracy on `V`.

        Fits the `"weighted"` mode's weights on `V`, scores `"fused"`, `"mean"`
        and `"weighted"` (cross-fitted) on `V` (`prediction.choose_mode`), and
        sets the best one (ties: fused, then mean). `GBlendCallback` makes the
        same choice when training ends (its default `output="auto"`), from the
        probabilities on `V` its measurement computed. Pass `V`, held out from
        the TRAINING data, never test data.

        Args:
            heldout: `(x, y)`: a dict of every modality's arrays and labels.
            batch_size: Batch size of the predictions.

        Returns:
            An `prediction.OutputChoice` (mode, scores on `V`, weights).

        Raises:
            ValueError: If `heldout` is not an `(x, y)` pair with every
                modality, or holds fewer than 4 examples.
        """
        probs, y = self._heldout_probs(heldout, batch_size)
        choice = prediction.choose_mode(probs, y, fused=self.head_names[-1])
        self.set_output_mode(choice.mode, choice.weights)
        return choice

    def predict_output(self, x, mode=None, missing=None, batch_size=None, verbose=0):
        """The model's one prediction: its heads combined by the output mode.

        `predict(x)` still returns every head's probabilities.

        Args:
            x: Dict from modality name to a `(batch, ...)` array. A modality may
                be absent: only the heads that can be computed are used (the
                fused head needs every modality).
            mode: An output mode (see `set_output_mode`); default
                `self.output_mode`.
            missing: Optional dict from modality name to a `(batch,)` boolean
                array, True where that modality is missing for that example
                (its input values there are ignored; fill them with anything,
                e.g. zeros). Those examples use only their available heads.
            batch_size: Batch size of the predictions.
            verbose: As in `keras.Model.predict` (`"auto"`, 0, 1 or 2);
                default 0, silent.

        Returns:
            A numpy `(batch, classes)` array of class probabilities.

        Raises:
            ValueError: If `x` is not a dict or has an unknown key, `missing`
                is malformed, an example has every modality missing, or `mode`
                is invalid.
        """
        mode = self.output_mode if mode is None else mode
        prediction.check_mode(mode, self.output_weights)
        probs, available = self._predict_heads(x, missing, batch_size, verbose)
        combined = prediction.combine(
            probs, mode, self.output_weights, available, fused=self.head_names[-1]
        )
        return ops.convert_to_numpy(combined)

    def evaluate_outputs(self, x, y, missing=None, batch_size=None):
        """Accuracy of every head and every output mode, from one prediction.

        Args:
            x, missing, batch_size: As in `predict_output`.
            y: `(batch,)` class indices or one-hot labels.

        Returns:
            `{"heads": {head: accuracy}, "modes": {mode: accuracy}}`. A head's
            accuracy counts the examples it is available for; heads that
            cannot be computed, and `"weighted"` before `fit_output_weights`,
            are left out.

        Raises:
            ValueError: As `predict_output`.
        """
        probs, available = self._predict_heads(x, missing, batch_size)
        modes = [m for m in prediction.MODES if m != "weighted" or self.output_weights]
        fused = self.head_names[-1]
        labels = np.asarray(y)
        return {
            "heads": {
                h: prediction.accuracy(p[available[h] > 0], labels[available[h] > 0])
                for h, p in probs.items()
            },
            "modes": {
                m: prediction.accuracy(
                    prediction.combine(
                        probs, m, self.output_weights, available, fused=fused
                    ),
                    labels,
                )
                for m in modes
            },
        }

    def _heldout_probs(self, heldout, batch_size):
        """Every head's probabilities on `V` and its labels, after checks."""
        if not isinstance(heldout, (tuple, list)) or len(heldout) != 2:
            raise ValueError(
                "`heldout` must be an (x, y) pair of held-out training data. "
                f"Received {type(heldout).__name__}."
            )
        x, y = heldout
        if not isinstance(x, Mapping) or set(x) != set(self.modalities):
            keys = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(
                f"`heldout` x must be a dict with every modality "
                f"{list(self.modalities)}. Received {keys}."
            )
        probs, _ = self._predict_heads(x, None, batch_size)
        return probs, y

    def _predict_heads(self, x, missing, batch_size, verbose=0):
        """Probabilities and availability of the heads computable from `x`."""
        if not isinstance(x, Mapping):
            raise ValueError(
                f"`x` must be a dict from modality name (of {list(self.modalities)}) "
                f"to arrays. Received {type(x).__name__}."
            )
        unknown = sorted(set(x) - set(self.modalities))
        lengths = {m: len(v) for m, v in x.items()}
        if unknown or len(set(lengths.values())) > 1:
            raise ValueError(
                f"`x` keys must be modalities {list(self.modalities)} with arrays "
                f"of one length. Received unknown keys {unknown}, lengths {lengths}."
            )
        heads, available = prediction.availability(
            self.modalities,
            list(x),
            missing,
            next(iter(lengths.values()), 0),
            fused=self.head_names[-1],
        )
        if set(x) == set(self.modalities):
            probs = self.predict(dict(x), batch_size=batch_size, verbose=verbose)
        else:  # Only modality heads can be computed: one sub-model each.
            probs = {
                m: self.head_model(m).predict(
                    {m: x[m]}, batch_size=batch_size, verbose=verbose
                )
                for m in heads
            }
        return {h: np.asarray(probs[h]) for h in heads}, available
