"""What a method gives back (`Outcome`) and what is measured on it.

`evaluate` turns one `Outcome` into its result fields: the same test
evaluation for every method (each head's accuracy, the heads' ensemble, the
blend weights), plus the evaluations a program chose by name. An evaluation is
a function `fn(outcome, ctx) -> JSON value`; `run_method`'s `evaluations` names
the ones a program wants and each becomes a field of every `GBlendModel`'s row
(`row[name]`). Adding one: a function and an entry of `EVALUATIONS`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_gblend.model.gblend_model import GBlendModel
from keras_gblend.model.heads import FUSED
from keras_gblend.model.prediction import accuracy

# `Outcome.output` for "the model's output mode" rather than one head.
OUTPUT = "output"


@dataclasses.dataclass
class Outcome:
    """One trained model, as a method returns it.

    Attributes:
        model: A `GBlendModel`, or a single-output model (uni-modal, OGM-GE).
        name: Row name; None: the method's name.
        output: The head the model answers with (its `accuracy`), or `OUTPUT`:
            the model's output mode (`predict_output`, e.g. chosen on `V`).
        state_path: The G-Blend state file written while training, if any.
        blend_state: The callback's `BlendState` after training (online
            G-Blend), or None.
        weights: Blend weights to report; None: the model's (for `GBlendModel`).
        extra: Method-specific result fields, copied into the row.
    """

    model: keras.Model
    name: str | None = None
    output: str = FUSED
    state_path: str | None = None
    blend_state: object = None
    weights: dict | None = None
    extra: dict = dataclasses.field(default_factory=dict)


def modes(outcome, ctx):
    """Test accuracy of every output mode, the `weighted` one fit on `V` only,
    and of the model's output with each modality removed (issue: inference)."""
    model, batch_size = outcome.model, ctx.config.batch_size
    model.fit_output_weights(ctx.heldout, batch_size=batch_size)
    x, y = ctx.task.test
    result = model.evaluate_outputs(x, y, batch_size=batch_size)["modes"]
    for gone in model.modalities:
        rest = {m: x[m] for m in model.modalities if m != gone}
        for mode in ("fused", "weighted"):
            result[f"{mode}_without_{gone}"] = accuracy(
                model.predict_output(rest, mode=mode), y
            )
    return result


def audio_shuffled_accuracy(outcome, ctx):
    """The fused head's test accuracy with the audio permuted across examples
    (seeded by the run's seed): how much its decision rests on audio. None
    without an `"audio"` modality."""
    x, y = ctx.task.test
    if "audio" not in x:
        return None
    perm = np.random.default_rng(ctx.seed).permutation(len(y))
    shuffled = dict(x, audio=x["audio"][perm])
    probs = outcome.model.predict(shuffled, batch_size=ctx.config.batch_size, verbose=0)
    return accuracy(probs[FUSED], y)


def weight_history(outcome, ctx):
    """Every G-Blend estimate made while training, as the state file records
    them (`BlendState.to_dict()["estimates"]`); `[]` without online G-Blend."""
    del ctx
    state = outcome.blend_state
    return [] if state is None else state.to_dict()["estimates"]


def missing_modalities(outcome, ctx):
    """What serving needs (`experiments.inference_study`): every head and output
    mode on test (`evaluate_outputs`), the `weighted` mode's weights fit on `V`,
    and per removed modality the model's own output (`predict_output` without
    it) and its fused head with the modality replaced by its training mean."""
    model, (x, y) = outcome.model, ctx.task.test
    output_weights = model.fit_output_weights(ctx.heldout)
    result = {**model.evaluate_outputs(x, y), "output_weights": output_weights}
    result["missing"] = {}
    for removed in model.modalities:
        kept = {m: v for m, v in x.items() if m != removed}
        imputed = dict(x)
        mean = ctx.task.train[0][removed].mean(axis=0)
        imputed[removed] = np.broadcast_to(mean, x[removed].shape).astype(
            x[removed].dtype
        )
        result["missing"][removed] = {
            "output": accuracy(model.predict_output(kept), y),
            "fused_imputed": accuracy(model.predict(imputed, verbose=0)[FUSED], y),
        }
    return result


# name -> function(outcome, ctx) -> JSON value.
EVALUATIONS = {
    "modes": modes,
    "missing_modalities": missing_modalities,
    "audio_shuffled_accuracy": audio_shuffled_accuracy,
    "weight_history": weight_history,
}
# What `run_method` measures unless told otherwise.
DEFAULT = ("modes",)


def evaluate(outcome, ctx, evaluations=DEFAULT):
    """The result fields of one `Outcome`: test accuracies, weights, evaluations."""
    model, (x, y) = outcome.model, ctx.task.test
    names = getattr(model, "modalities", None) or list(model.input)
    probs = model.predict(
        {m: x[m] for m in names}, batch_size=ctx.config.batch_size, verbose=0
    )
    if not isinstance(probs, dict):  # A single head's model.
        probs = {outcome.output: probs}
    accs = {h: accuracy(p, y) for h, p in probs.items()}
    if outcome.output == OUTPUT:
        accs[OUTPUT] = accuracy(
            model.predict_output(x, batch_size=ctx.config.batch_size), y
        )
    fields = dict(
        accuracy=accs[outcome.output], head_accuracy=accs, ensemble_accuracy=None
    )
    if isinstance(model, GBlendModel):
        ensemble = np.mean([probs[h] for h in model.head_names], axis=0)
        fields["ensemble_accuracy"] = accuracy(ensemble, y)
        fields["weights"] = outcome.weights or model.get_blend_weights()
        fields["output_mode"] = model.output_mode
        fields.update({name: EVALUATIONS[name](outcome, ctx) for name in evaluations})
    else:
        fields["weights"] = outcome.weights
    return fields
