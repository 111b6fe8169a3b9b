"""Speaker-fold cross-validation: the fair comparison protocol.

Protocol: a pool of examples in groups (AV-Digits' two splits pooled: 6
speakers) is cut into folds of whole groups; each fold tests its groups (every
group once) and trains on the others, with `V` = whole training groups. Each
method's learning rate is chosen per fold on `V` only, from one grid shared by
all methods: a selection run gets a `Task` whose test split IS `V`
(`selection_task`), so the fold's test groups are never an argument of
selection (`tests/experiments/test_crossval.py` proves it with a test split that
raises when read). Then each method trains with its rate, once per seed, and is
scored on the fold's test groups (output head and heads' ensemble).

Runs go through the run function `run_fn(method, task, config, seed) -> rows`
that the program gives `run_protocol`: `experiments.methods.run_method` (any
row of `METHODS`), or a stand-in in the tests; the protocol knows folds, seeds,
selection and the ledger, not what a method is. Every finished run is
appended to a JSONL file (`experiments.ledger`): a killed run continues where
it stopped. The programs `experiments.crossval` and
`experiments.defaults_study` choose the rows and format the tables
(`experiments.cv_report`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from experiments import common
from experiments.ledger import Ledger
from keras_gblend import data
from keras_gblend.data import mfeat
from keras_gblend.data.synthetic import memorisable_modality

DEFAULT_GRID = (0.003, 0.01, 0.03)


def pooled_av_digits():
    """AV-Digits' two splits as one pool `(x, y, speakers)` of 6 speakers."""
    parts = [data.load_av_digits(s) for s in ("train", "test")]
    x = {m: np.concatenate([p.x[m] for p in parts]) for m in parts[0].x}
    y = np.concatenate([p.y for p in parts])
    return x, y, np.concatenate([p.speakers for p in parts])


def pooled_mfeat(num_groups=6, seed=0):
    """UCI Multiple Features' splits as one pool of 2,000 examples (6 views).

    Its examples have no natural groups, so each class is dealt round-robin,
    in a seeded random order, into `num_groups` class-balanced groups that
    play the speakers' part: folds and `V` are whole groups.
    """
    x, y = mfeat.load_mfeat("all", standardize=False)
    groups = np.empty(len(y), int)
    rng = np.random.default_rng(seed)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        groups[rows] = np.arange(len(rows)) % num_groups
    return x, y, groups


MEMORISABLE_SIGNAL = 2.0  # The weak modality alone: about 30% (10 classes).


def pooled_memorisable(signal=MEMORISABLE_SIGNAL, seed=0):
    """AV-Digits' images paired with a weak modality memorised example by
    example (`data.synthetic.memorisable_modality`, 1024-d), speakers kept."""
    x, y, speakers = pooled_av_digits()
    code = memorisable_modality(y, signal=signal, num_classes=10, seed=seed)
    return {"image": x["image"], "code": code}, y, speakers


REGIME_VIEW = "fourier"  # Multiple Features' view that leaves room: about 80% alone.


def pooled_regime(signal=MEMORISABLE_SIGNAL, view=REGIME_VIEW, seed=0):
    """One Multiple Features view paired with a weak, memorisable modality.

    The regime family of issue 17 (`experiments.regime_study`): the view
    (`view`, an MLP's input) and `code = memorisable_modality(y, signal=signal)`
    (1024-d, a per-example code plus a class signal of norm `signal`). The knob
    `signal` moves the code from informative (4: mild imbalance) to pure noise
    (0: alone at chance, memorised fast, as the paper's Kinetics audio).
    Groups: `pooled_mfeat`'s class-balanced groups.
    """
    x, y, groups = pooled_mfeat()
    code = memorisable_modality(y, signal=signal, num_classes=10, seed=seed)
    return {view: x[view], "code": code}, y, groups


# name -> (pool loader, modalities re-standardised per fold on training rows).
POOLS = {
    "av_digits": (pooled_av_digits, ("audio",)),
    "mfeat": (pooled_mfeat, tuple(mfeat.VIEWS)),
    "memorisable": (pooled_memorisable, ()),
    "regime": (pooled_regime, (REGIME_VIEW,)),
}


def speaker_folds(speakers, num_folds):
    """Cuts the sorted distinct speakers into `num_folds` groups of test speakers.

    Raises:
        ValueError: If there are fewer speakers than folds plus one.

    Example:

    >>> speaker_folds([3, 1, 2, 1, 0, 5, 4], 3)
    [[0, 1], [2, 3], [4, 5]]
    """
    unique = np.unique(speakers)
    if len(unique) < num_folds + 1 or num_folds < 2:
        raise ValueError(
            f"`num_folds` must be in [2, {len(unique) - 1}] for {len(unique)} "
            f"speakers. Received {num_folds}."
        )
    return [part.tolist() for part in np.array_split(unique, num_folds)]


def _standardise(x, train_rows, modalities):
    """Re-standardises `modalities` per feature bin on the fold's training rows."""
    x = dict(x)
    for m in modalities:
        ref = x[m][train_rows]
        axes = (0, 1) if ref.ndim >= 3 else (0,)  # per mel bin, as load_av_digits
        mean, std = ref.mean(axis=axes), np.maximum(ref.std(axis=axes), 1e-6)
        x[m] = ((x[m] - mean) / std).astype(np.float32)
    return x


def fold_task(pool, test_speakers, name="av_digits", standardise=("audio",)):
    """The `common.Task` of one fold: test = `test_speakers`, train = the others.

    Modalities in `standardise` are re-standardised with statistics of the
    fold's training speakers only.
    """
    x, y, speakers = pool
    test = np.isin(speakers, test_speakers)
    x = _standardise(x, ~test, [m for m in standardise if m in x])
    train_rows, test_rows = np.flatnonzero(~test), np.flatnonzero(test)
    train, test = data.take((x, y), train_rows), data.take((x, y), test_rows)
    return common.Task(name, train, test, speakers[train_rows], int(y.max()) + 1)


def selection_task(task, config, seed):
    """The task a selection run trains and scores on: its test split is `V`.

    Only `task.train` and `task.groups` are read, so selection never sees the
    fold's test speakers.
    """
    fraction = config.heldout_fraction
    rows, heldout = data.holdout_indices(
        task.train[1], heldout_fraction=fraction, groups=task.groups, seed=seed
    )
    groups = None if task.groups is None else np.asarray(task.groups)[rows]
    train, heldout = data.take(task.train, rows), data.take(task.train, heldout)
    return common.Task(f"{task.name}/select", train, heldout, groups, task.num_classes)


def _result(fold, seed, lr, row):
    ens = row.get("ensemble_accuracy")
    return dict(
        fold=fold,
        seed=seed,
        method=row["method"],
        lr=lr,
        accuracy=100 * row["accuracy"],
        ensemble_accuracy=None if ens is None else 100 * ens,
        weights=row.get("weights"),
    )


def select_learning_rates(method, task, config, grid, *, ledger, fold, run_fn, seed=0):
    """Learning rate per result row (e.g. `unimodal_image`) chosen on `V`.

    Returns:
        `{row_method: lr}`: the grid value with the best output-head accuracy on
        `V` (ties: the smaller rate).
    """
    sel = selection_task(task, config, seed)
    scores = {}
    for lr in grid:
        cfg = dataclasses.replace(config, learning_rate=lr)
        key = ("select", fold, method, lr, seed)
        for row in ledger.run(key, run_fn, method, sel, cfg, seed):
            scores.setdefault(row["method"], []).append((row["accuracy"], -lr, lr))
    return {m: max(s)[2] for m, s in scores.items()}


class NotRecorded(LookupError):
    """A run that `run_protocol(recorded_only=True)` found missing."""


def _not_recorded(*args):
    raise NotRecorded()


def _method_results(method, task, config, grid, ledger, fold, seed, run_fn):
    """The chosen rates and the result records of one method on one fold."""
    lrs = None  # One rate in the grid: nothing to choose, no selection.
    if len(grid) > 1:
        lrs = select_learning_rates(
            method, task, config, grid, ledger=ledger, fold=fold, run_fn=run_fn
        )
    now = []
    for lr in sorted(set(lrs.values())) if lrs else grid:
        cfg = dataclasses.replace(config, learning_rate=lr)
        key = ("test", fold, method, lr, seed)
        rows = ledger.run(key, run_fn, method, task, cfg, seed)
        now += [
            _result(fold, seed, lr, r)
            for r in rows
            if lrs is None or lrs[r["method"]] == lr
        ]
    return lrs, now


def run_protocol(
    methods,
    pool,
    config,
    *,
    run_fn,
    folds=3,
    seeds=5,
    grid=DEFAULT_GRID,
    output=None,
    log=print,
    name="av_digits",
    standardise=("audio",),
    recorded_only=False,
):
    """Runs the cross-validated comparison; returns the test records.

    Args:
        methods: Method names understood by `run_fn`.
        pool: `(x, y, groups)` pooled data (see `pooled_av_digits`).
        config: The `common.Config` every run starts from.
        folds, seeds: Speaker folds; seeds 0..seeds-1 per fold.
        grid: Learning rates every method's selection tries.
        run_fn: `run_fn(method, task, config, seed) -> rows`, e.g.
            `experiments.methods.run_method`.
        output: JSONL results file (resumed if it exists) or None.
        log: Progress printer.
        name, standardise: The data set's name and the modalities
            re-standardised per fold (see `fold_task`).
        recorded_only: Read `output` only: a method whose runs on a fold are
            not all recorded yet is left out of that fold (a report of a
            comparison still running), nothing is trained.

    Returns:
        A list of dicts `fold, seed, method, lr, accuracy, ensemble_accuracy,
        weights` (accuracies in %), one per result row.
    """
    run_fn = _not_recorded if recorded_only else run_fn
    header = dict(config=dataclasses.asdict(config), folds=folds, grid=list(grid))
    if name != "av_digits":  # Files written before `--dataset` keep their header.
        header["dataset"] = name
    ledger = Ledger(output, header)
    tasks = [
        fold_task(pool, s, name, standardise) for s in speaker_folds(pool[2], folds)
    ]
    results, start, done = [], time.perf_counter(), 0
    for seed in range(seeds):  # seed-major: a partial run covers every fold
        for fold, task in enumerate(tasks):
            for method in methods:
                try:
                    lrs, now = _method_results(
                        method, task, config, grid, ledger, fold, seed, run_fn
                    )
                except NotRecorded:  # `recorded_only`: this one has not run yet.
                    continue
                results += now
                done += 1
                log(
                    f"[{time.perf_counter() - start:6.0f} s, {done}/"
                    f"{seeds * folds * len(methods)}] fold {fold} seed {seed} "
                    f"{method} lr {lrs or grid[0]}: "
                    + ", ".join(f"{r['method']} {r['accuracy']:.1f}" for r in now)
                )
    return results


# A seconds-long setting, for tests.
SMOKE = dict(epochs=1, warmup_epochs=0, super_epoch=1, subset_size=64)
