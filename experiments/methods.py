"""Every method the experiments report, in one table, and the one runner.

`METHODS` maps each row name to a function `method(ctx) -> Outcome`, written in
`experiments.rows` (the comparison's methods and the fused-head study's). Every
program (`train`, `compare`, `crossval`, `sensitivity`, `study_fused`,
`defaults_study`, `inference_study`, the tools) trains through `run_method`: it
makes the `common.Context`, calls the method in the strategy's scope and turns
every `Outcome` into one result row, the same test evaluation for every method
plus the `evaluations` the program chose.

Extending it (one small function, one table entry each):

- a method: `def ogm_ge(ctx): ...; return Outcome(model)` in `experiments.rows`
  and `"ogm_ge": rows.ogm_ge` here;
- a result field for every fused model: a function and an entry of
  `experiments.evaluations.EVALUATIONS`, named in `run_method(evaluations=...)`;
- a field only one method knows: `Outcome(model, extra={"name": value})`.
"""

from __future__ import annotations

import time

from experiments import common, rows
from experiments.evaluations import DEFAULT, EVALUATIONS, Outcome, evaluate

METHODS = {
    # The paper's comparison (`compare`), the recipes and the package's
    # defaults (`crossval`, `defaults_study`).
    "unimodal": rows.unimodal,
    "naive": rows.naive,
    "dropout": rows.dropout,
    "early_stopping": rows.early_stopping,
    "pretrain": rows.pretrain,
    "uniform": rows.uniform,
    "gblend_offline": rows.gblend_offline,
    "gblend_online": rows.gblend_online,
    "gblend_exact": rows.gblend_exact,
    "gblend_dropout": rows.gblend_dropout,
    "gblend_recipe": rows.gblend_recipe,
    "gblend_default": rows.gblend_default,
    "gblend_default_num_heads": rows.gblend_default_num_heads,
    "heads_dropout": rows.heads_dropout,
    "gblend_offline_recipe": rows.gblend_offline_recipe,
    "ogm_ge": rows.ogm_ge,
    # The fused-head study (`study_fused`) and the in-situ recipes' estimators.
    "naive_lr_third": rows.naive_lr_third,
    "naive_lr_x3": rows.naive_lr_x3,
    "uniform_x3": rows.uniform_x3,
    "dropout_x3": rows.dropout_x3,
    "gblend_x3": rows.gblend_x3,
    "gblend_x3_floor": rows.gblend_x3_floor,
    "gblend_x3_stop": rows.gblend_x3_stop,
    "gblend_x3_dropout": rows.gblend_x3_dropout,
    "uniform_heads_dropout": rows.uniform_heads_dropout,
    "recipe_paper": rows.recipe_paper,
    "recipe_uncertain": rows.recipe_uncertain,
    "recipe_windowed": rows.recipe_windowed,
    "recipe_robust": rows.recipe_robust,
    "recipe_rate": rows.recipe_rate,
    "recipe_rate_uncertain": rows.recipe_rate_uncertain,
    # The baseline a user would pick instead (`defaults_study`, `regime_study`).
    "unimodal_ensemble": rows.unimodal_ensemble,
}


def _outcomes(result):
    return [result] if isinstance(result, Outcome) else result


def run_method(
    method,
    task,
    config=None,
    seed=0,
    verbose=0,
    strategy="default",
    state_path=None,
    evaluations=DEFAULT,
):
    """Trains one method on `task` and returns its result rows.

    Args:
        method: A key of `METHODS`.
        task: A `common.Task`.
        config: A `common.Config`; None: the defaults.
        seed: Seed of the split, the initialisation and the data order.
        verbose: Keras verbosity of `fit`.
        strategy: `"default"`, `"mirrored"` or `"multi_worker"`: the
            `tf.distribute` strategy whose scope the whole run is in.
        state_path: Where a G-Blend method writes its state file (which
            `python -m tools.plot_blend` plots), or None for none.
        evaluations: Keys of `experiments.evaluations.EVALUATIONS` measured on
            every multi-head model (default: the output modes).

    Returns:
        A list of dicts, one per trained model, with `method`, `seed`,
        `accuracy` (the head the model answers with: fused, or the modality of
        a uni-modal model), `head_accuracy`, `ensemble_accuracy`, `weights`
        (final blend weights), `state_path`, `seconds`, one field per
        evaluation and the outcome's `extra` fields.

    Raises:
        ValueError: If `method` or an evaluation is unknown.
    """
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {list(METHODS)}. Received {method!r}."
        )
    unknown = [name for name in evaluations if name not in EVALUATIONS]
    if unknown:
        raise ValueError(
            f"`evaluations` must be keys of {list(EVALUATIONS)}. Received {unknown}."
        )
    config = config or common.Config()
    result_rows = []
    with common.strategy_scope(strategy):  # Every model and copy in its scope.
        ctx = common.make_context(
            task, config, seed, method=method, verbose=verbose, state_path=state_path
        )
        start = time.perf_counter()
        for outcome in _outcomes(METHODS[method](ctx)):
            row = dict(method=outcome.name or method, seed=seed)
            row.update(evaluate(outcome, ctx, evaluations))
            row.update(state_path=outcome.state_path)
            row.update(outcome.extra, seconds=time.perf_counter() - start)
            result_rows.append(row)
    return result_rows
