"""`experiments.defaults_study`: the regime tables and the first block's goals."""

from experiments import defaults_study


def _results(accuracies):
    """Result records of `protocol.run_protocol` for 3 (fold, seed) pairs."""
    return [
        dict(
            fold=fold,
            seed=0,
            method=method,
            lr=0.03,
            accuracy=value + fold * 0.1 * (method == "gblend_default"),
            ensemble_accuracy=None,
            weights=None,
        )
        for method, value in accuracies.items()
        for fold in range(3)
    ]


def test_goals_pair_the_first_block_with_naive_best_single_and_best_row():
    results = _results(
        {
            "unimodal_a": 90.0,
            "unimodal_b": 40.0,
            "naive": 85.0,
            "heads_dropout": 93.0,
            "gblend_default": 92.0,  # 92.0, 92.1, 92.2 over the folds.
        }
    )
    text = defaults_study.report("toy", results)
    assert "### toy" in text
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if "| " in line}
    # Best row other than the first block: heads_dropout, 0.9 points above it.
    assert rows["| within 0.5 of the best row (heads_dropout)"].endswith(
        "| -0.9 | **missed** |"
    )
    # +7.1 over naive on every fold: the interval is above 0.
    assert "| +7.1 [+6.9, +7.3] | met |" in rows["| above naive fusion, CI above 0"]
    # The best single modality is unimodal_a (90.0): +2.1, met.
    single = rows["| at most 1 below the best single modality (unimodal_a)"]
    assert single.endswith("| met |") and "+2.1" in single


def test_a_first_block_below_the_best_single_modality_misses_that_goal():
    results = _results({"unimodal_a": 95.0, "naive": 85.0, "gblend_default": 93.0})
    goals = defaults_study.goals(
        defaults_study.cv_report.summarise(results, ("naive", "unimodal_a")),
        "unimodal_a",
    )  # The best other row is unimodal_a itself.
    assert [met for _, _, met in goals] == [False, True, False]


def test_a_variant_row_is_paired_with_the_first_block_and_kept_out_of_the_goals():
    results = _results(
        {
            "unimodal_a": 90.0,
            "naive": 85.0,
            "gblend_default": 92.0,  # 92.0, 92.1, 92.2 over the folds.
            "gblend_default[subset_size=500]": 95.0,
        }
    )
    text = defaults_study.report("toy", results)
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if "| " in line}
    variant = rows["| gblend_default[subset_size=500]"]
    # Its last pairing is with the first block: +2.9 on average (3.0, 2.9, 2.8).
    assert variant.endswith("| +2.9 [+2.7, +3.1] (3/0/0) | – |")
    # The variant scores best but is a candidate default, not a rival row.
    assert rows["| within 0.5 of the best row (unimodal_a)"].endswith("| met |")
    assert "gblend_default[subset_size=500]: The README's first block" in text
    assert "but subset_size=500" in text


def test_the_first_block_alone_beside_its_variant_is_paired_without_goals():
    results = _results(
        {"gblend_default": 92.0, "gblend_default[subset_size=500]": 93.0}
    )
    text = defaults_study.report("toy", results)
    variant = next(line for line in text.splitlines() if "[subset_size=500] |" in line)
    assert variant.endswith("| +0.9 [+0.7, +1.1] (3/0/0) | – |")  # 1.0, 0.9, 0.8
    assert "goal for the first block" not in text
