"""The multi-head G-Blend model: one classifier head per modality plus a fused head.

`keras_gblend.build_gblend_model` (in `builder.py`) joins one Keras functional
sub-model per modality into a single `GBlendModel` whose outputs are keyed by
modality name plus `"fused"`. The model owns one non-trainable loss-weight
variable per head and passes them to `compile`, so a callback's `assign` takes
effect at the next training step without re-tracing (Keras bakes Python-float loss
weights into the traced train function; a dict of variables is read at every step).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np

from keras_gblend.common import strategy_check
from keras_gblend.model import fit_setup, objective
from keras_gblend.model.heads import FUSED, check_modalities, weights_vector
from keras_gblend.model.output_modes import OutputModes


@keras.saving.register_keras_serializable(package="keras_gblend")
class GBlendModel(OutputModes, keras.Model):
    """A functional multi-output model that owns its per-head loss weights.

    Build it with `build_gblend_model` (or functionally, with one named input per
    modality and a dict of outputs keyed by `modalities + ("fused",)`). It behaves
    like any Keras model, with five additions:

    * `blend_weights`: one non-trainable scalar variable per head, used as the
      per-head loss weights by `compile`; `set_blend_weights` assigns them.
    * Labels: `fit`/`evaluate` accept a single label tensor and copy it to every
      head (a dict of per-head labels is accepted too).
    * Inputs: a dict of inputs must have exactly the modality keys; a missing or
      extra key, or a list or tuple of inputs, raises instead of being fed to
      the wrong branch.
    * Logs: besides Keras's `loss` (the blended sum, whose scale changes with
      the weights) and `<head>_loss` (unweighted), `mean_head_loss`: the mean
      of the heads' unweighted losses, for `EarlyStopping` and
      `ReduceLROnPlateau` (`keras_gblend.model.objective`).
    * Output modes (`keras_gblend.model.output_modes.OutputModes`): `predict_output`
      combines the heads as `output_mode` says (`"fused"`, `"mean"` or
      `"weighted"`), also with modalities missing; `evaluate_outputs` reports
      every head and mode.

    Args:
        *args: Passed to `keras.Model` (`inputs`, `outputs`).
        modalities: Names of the modality heads, in order. The fused head is
            always `"fused"`.
        initial_blend_weights: Starting weights, a mapping from head name to
            float or a sequence in head order. Default: uniform `1 / num_heads`.
        output_mode: The output mode (see `set_output_mode`); default
            `"fused"`, the paper's choice.
        output_weights: The `"weighted"` mode's weights, or None.
        **kwargs: Passed to `keras.Model` (`name`, ...).

    Example:

    >>> import keras
    >>> from keras_gblend import build_gblend_model
    >>> branches = {
    ...     name: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    ...     for name in ("a", "b")
    ... }
    >>> model = build_gblend_model(branches, num_classes=2)
    >>> model.head_names
    ('a', 'b', 'fused')
    >>> model.set_blend_weights({"a": 0.2, "b": 0.3, "fused": 0.5})
    >>> {k: round(v, 2) for k, v in model.get_blend_weights().items()}
    {'a': 0.2, 'b': 0.3, 'fused': 0.5}
    """

    def __init__(
        self,
        *args,
        modalities=None,
        initial_blend_weights=None,
        output_mode="fused",
        output_weights=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if modalities is None:
            raise ValueError(
                "`modalities` must list the modality names (at least two). "
                "Received None. Use `build_gblend_model` to build this model."
            )
        self.modalities = check_modalities(modalities)
        self.head_names = self.modalities + (FUSED,)
        if not isinstance(self.output, dict) or set(self.output) != set(
            self.head_names
        ):
            received = sorted(self.output) if isinstance(self.output, dict) else None
            raise ValueError(
                f"`outputs` must be a dict keyed by {list(self.head_names)}. "
                f"Received output keys {received}."
            )
        weights = weights_vector(initial_blend_weights, self.head_names)
        self.initial_blend_weights = dict(zip(self.head_names, weights.tolist()))
        self._blend_weights = {
            name: self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(float(w)),
                trainable=False,
                name=f"blend_weight_{name}",
                aggregation="only_first_replica",
            )
            for name, w in zip(self.head_names, weights)
        }
        self.set_output_mode(output_mode, output_weights)

    @property
    def blend_weights(self):
        """Dict from head name to its non-trainable loss-weight variable."""
        return dict(self._blend_weights)

    def get_blend_weights(self):
        """Returns the current loss weights as a dict of Python floats."""
        return {name: float(v.numpy()) for name, v in self._blend_weights.items()}

    def set_blend_weights(self, weights):
        """Assigns new loss weights; they apply from the next training step.

        Args:
            weights: A mapping from every head name to a weight, or a sequence of
                weights in `head_names` order. Weights must be finite and `>= 0`.

        Raises:
            ValueError: If a head is missing or unknown, a weight is negative
                or not finite, or every weight is 0 (the model would train on a
                loss of 0 and learn nothing).
        """
        values = weights_vector(weights, self.head_names, normalise=False)
        if not values.any():
            raise ValueError(
                "`weights` must not all be 0: the model would train on a loss of "
                "0 and learn nothing. Expected at least one weight > 0, one per "
                f"head {list(self.head_names)}. Received {values.tolist()}."
            )
        for name, value in zip(self.head_names, values):
            self._blend_weights[name].assign(float(value))

    def head_model(self, head):
        """A single-output functional model computing `head` from its own inputs.

        This is the one way to get a head's sub-model: estimation trains copies
        of it, export serves it. It SHARES layers (and so weights) with this
        model; to train it independently, call it on a copy of the model.

        Args:
            head: A modality name (that branch and its head: the uni-modal
                model) or `"fused"` (every branch and the fused head: the naive
                late-fusion model).

        Returns:
            A functional `keras.Model` with a dict input holding only the
            modalities `head` reads, and one softmax output.

        Raises:
            ValueError: If `head` is not one of `head_names`.

        Example:

        >>> import keras
        >>> from keras_gblend import build_gblend_model
        >>> branches = {
        ...     n: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        ...     for n in ("a", "b")
        ... }
        >>> model = build_gblend_model(branches, num_classes=2)
        >>> list(model.head_model("a").input), list(model.head_model("fused").input)
        (['a'], ['a', 'b'])
        """
        if head not in self.head_names:
            raise ValueError(
                f"`head` must be one of {list(self.head_names)}. Received {head!r}."
            )
        names = self.modalities if head == FUSED else (head,)
        return keras.Model(
            inputs={m: self.input[m] for m in names},
            outputs=self.output[head],
            name=f"{self.name}_{head}",
        )

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        **kwargs,
    ):
        """Trains the model; `keras.Model.fit` with G-Blend-aware callbacks.

        Same arguments as `keras.Model.fit`. With a `GBlendCallback` among
        `callbacks` (see `keras_gblend.model.fit_setup.prepare_callbacks`): it runs
        before the other callbacks, so they see its keys of the same epoch; the
        progress bar leaves out its per-estimate diagnostics (it prints them on
        its own line); two of them are refused, `T'`/`V` are compared with
        `x` (when it is a dict of arrays) and with Keras's `validation_split`
        slice before the first epoch, and a callback monitoring the blended
        `loss` gets a warning naming the key to monitor instead,
        `"mean_head_loss"` (`keras_gblend.model.objective`).

        Returns:
            A `keras.callbacks.History`.

        Raises:
            ValueError: If `x` is a list or tuple: inputs must be a dict keyed
                by modality.
        """
        self._refuse_sequence(x)
        callbacks = fit_setup.prepare_callbacks(
            callbacks,
            verbose=verbose,
            x=x,
            validation_split=kwargs.get("validation_split", 0.0),
        )
        return super().fit(
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            **kwargs,
        )

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, **kwargs):
        """Configures the model for training, with the blend weights as loss weights.

        Same as `keras.Model.compile`, except that `loss` may be one loss (it is
        used for every head) and `loss_weights` must be left unset: the model's
        blend-weight variables are used instead.

        Args:
            optimizer: As in `keras.Model.compile`. SGD with momentum is
                recommended: Adam largely cancels per-head loss weights.
            loss: One loss for every head, or a dict keyed by head name.
            loss_weights: Must be None.
            **kwargs: Passed to `keras.Model.compile` (`metrics`, ...).

        Raises:
            ValueError: If `loss_weights` is given, `loss` is missing or has the
                wrong keys, or a setting is known to break under the model's
                `tf.distribute` strategy (`jit_compile=True` or
                `steps_per_execution > 1` with several replicas).

        Warns:
            UserWarning: Under a `tf.distribute` strategy of several replicas
                without `keras_gblend.tf.distribute.apply_fixes()` in effect.
        """
        if loss_weights is not None:
            raise ValueError(
                "`loss_weights` is managed by GBlendModel (its blend-weight "
                "variables); set them with `set_blend_weights`. Received "
                f"loss_weights={loss_weights}."
            )
        if loss is None:
            raise ValueError(
                "`loss` is required, e.g. 'sparse_categorical_crossentropy'. "
                "Received None."
            )
        if isinstance(loss, Mapping):
            if set(loss) != set(self.head_names):
                raise ValueError(
                    f"`loss` dict must have the keys {list(self.head_names)}. "
                    f"Received {sorted(loss)}."
                )
            loss = {name: loss[name] for name in self.head_names}
        else:
            loss = {name: loss for name in self.head_names}
        metrics = kwargs.pop("metrics", None)
        if metrics is not None and not isinstance(metrics, Mapping):
            metrics = {name: metrics for name in self.head_names}
        super().compile(
            optimizer=optimizer,
            loss=loss,
            loss_weights=dict(self._blend_weights),
            metrics=metrics,
            **kwargs,
        )
        if not hasattr(self, "_objective"):  # Once: compile may be called again.
            # Logs `mean_head_loss` (see `keras_gblend.model.objective`).
            self._objective = objective.ObjectiveMetrics(self, self.head_names)
        # What `get_compile_config` saves: everything but the blend-weight
        # variables (saved with the weights; not serializable on JAX/PyTorch).
        self._gblend_compile_args = dict(
            optimizer=optimizer, loss=loss, metrics=metrics, **kwargs
        )
        if keras.backend.backend() == "tensorflow":
            # A check only: the Keras fixes are applied by `get_strategy` or the
            # user (`distribute.apply_fixes`), never as a side effect of compile.
            strategy_check.check_compatibility(
                self.distribute_strategy,
                jit_compile=self.jit_compile,
                steps_per_execution=self.steps_per_execution,
            )

    def get_compile_config(self):
        if not self.compiled or not hasattr(self, "_gblend_compile_args"):
            return super().get_compile_config()
        return keras.saving.serialize_keras_object(self._gblend_compile_args)

    def compile_from_config(self, config):
        config = dict(config)
        config.pop("loss_weights", None)  # files saved before get_compile_config
        optimizer = config.pop("optimizer", None)
        config = keras.utils.deserialize_keras_object(config)
        if optimizer is not None:
            # By name: an optimizer saved on PyTorch names a torch-only module.
            config["optimizer"] = keras.optimizers.get(optimizer)
        self.compile(**config)
        if self.built and hasattr(self, "optimizer"):
            self.optimizer.build(self.trainable_variables)

    def evaluate(self, x=None, *args, **kwargs):
        self._refuse_sequence(x)  # Before Keras turns a list into a tuple.
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._refuse_sequence(x)
        return super().predict(x, *args, **kwargs)

    def call(self, inputs, training=None, mask=None):
        self._refuse_sequence(inputs)
        if isinstance(inputs, Mapping):
            inputs = self._select_modalities(inputs)
        return super().call(inputs, training=training, mask=mask)

    def _refuse_sequence(self, inputs):
        # Keras would feed a list by position, with only a structure warning.
        if isinstance(inputs, (list, tuple)):
            raise ValueError(
                "Inputs must be a dict keyed by modality, with exactly the keys "
                f"{list(self.modalities)} (e.g. x={{{self.modalities[0]!r}: ...}}). "
                f"Received a {type(inputs).__name__} of {len(inputs)} values."
            )

    def _select_modalities(self, inputs):
        keys = set(inputs)
        missing = [m for m in self.modalities if m not in keys]
        extra = sorted(keys - set(self.modalities))
        if missing or extra:
            raise ValueError(
                f"Inputs must be a dict with exactly the modality keys "
                f"{list(self.modalities)}. Missing: {missing}; unexpected: {extra}. "
                "Drop extra keys before calling the model (an extra key is never "
                "fed to a branch)."
            )
        return {m: inputs[m] for m in self.modalities}

    def _expand_labels(self, y):
        if isinstance(y, Mapping):
            return y
        shape = tuple(getattr(y, "shape", np.shape(y)))
        num_classes = self.output[FUSED].shape[-1]
        if len(shape) not in (1, 2) or (
            len(shape) == 2 and shape[-1] not in (1, num_classes, None)
        ):
            raise ValueError(
                "Labels must have shape (batch,) or (batch, 1) with class indices, "
                f"or (batch, {num_classes}) one-hot. Received shape {shape}."
            )
        return {name: y for name in self.head_names}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kw):
        return super().compute_loss(
            x, self._expand_labels(y), y_pred, sample_weight, **kw
        )

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return super().compute_metrics(
            x, self._expand_labels(y), y_pred, sample_weight=sample_weight
        )

    def get_config(self):
        config = super().get_config()
        config["modalities"] = list(self.modalities)
        config["initial_blend_weights"] = dict(self.initial_blend_weights)
        config["output_mode"] = self.output_mode
        config["output_weights"] = self.output_weights
        return config
