"""Tests for keras_gblend.data.pipelines, eagerly and inside `Dataset.map`."""

import os
import pathlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_gblend import GBlendCallback, GBlendWarning, build_gblend_model
from keras_gblend.data import audio, pipelines

WAV_DIR = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "wav"


def _arrays(num=10):
    rng = np.random.default_rng(0)
    x = {
        "a": rng.normal(size=(num, 3)).astype("float32"),
        "b": rng.integers(0, 255, size=(num, 2, 2)).astype("uint8"),
    }
    return x, np.arange(num, dtype="int32") % 3


def _chain(dataset):
    """Names of the dataset transformations, last first (e.g. Prefetch, Batch)."""
    names = []
    while dataset is not None:
        names.append(type(dataset).__name__.strip("_").replace("Dataset", ""))
        dataset = getattr(dataset, "_input_dataset", None)
    return names


def _labels(dataset):
    return np.concatenate([y for _, y in dataset.as_numpy_iterator()]).tolist()


def test_make_dataset_keeps_order_and_shapes_without_shuffle():
    x, y = _arrays(10)
    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=False)
    batches = list(ds.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0]["a"] for b in batches]), x["a"])
    np.testing.assert_array_equal(np.concatenate([b[0]["b"] for b in batches]), x["b"])
    assert batches[0][0]["b"].dtype == np.uint8
    assert _labels(ds) == y.tolist()


def test_make_dataset_pipeline_order():
    x, y = _arrays(10)
    ds = pipelines.make_dataset(
        x, y, batch_size=4, shuffle=True, seed=1, cache=True, repeat=True
    )
    assert _chain(ds)[:5] == ["Prefetch", "Batch", "Repeat", "Shuffle", "Cache"]
    plain = pipelines.make_dataset(x, y, batch_size=4, shuffle=False)
    assert _chain(plain)[:2] == ["Prefetch", "Batch"]
    assert "Shuffle" not in _chain(plain) and "Cache" not in _chain(plain)


def test_shuffle_is_per_example_seeded_and_new_every_epoch():
    x, y = _arrays(12)
    x["a"][:, 0] = np.arange(12)  # identify examples by a["a"][:, 0]

    def epochs(ds, count):
        return [
            np.concatenate([f["a"][:, 0] for f, _ in ds.as_numpy_iterator()]).tolist()
            for _ in range(count)
        ]

    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=True, seed=3)
    first, second = epochs(ds, 2)
    again = epochs(pipelines.make_dataset(x, y, batch_size=4, shuffle=True, seed=3), 2)
    assert [first, second] == again  # same seed, same orders
    assert first != second  # reshuffled every epoch
    assert sorted(first) == sorted(second) == list(range(12))  # same examples
    # Examples, not whole batches, are shuffled.
    assert sorted(first[:4]) != [0, 1, 2, 3] or sorted(first[4:8]) != [4, 5, 6, 7]


def test_drop_remainder_and_repeat():
    x, y = _arrays(10)
    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=False, drop_remainder=True)
    assert [len(b) for _, b in ds.as_numpy_iterator()] == [4, 4]
    assert ds.element_spec[1].shape == (4,)
    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=False, repeat=True)
    assert int(ds.cardinality()) == tf.data.INFINITE_CARDINALITY
    taken = [b.tolist() for _, b in ds.take(4).as_numpy_iterator()]
    assert taken[2] == y[8:].tolist() + y[:2].tolist()


def test_file_cache(tmp_path):
    x, y = _arrays(6)
    prefix = tmp_path / "cache"
    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=True, seed=0, cache=prefix)
    assert sorted(_labels(ds)) == sorted(y.tolist())
    assert any(p.name.startswith("cache") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "x, y, kwargs, match",
    [
        ([1, 2], [0, 1], {}, "x must be a non-empty dict"),
        ({}, [0, 1], {}, "x must be a non-empty dict"),
        ({"a": np.zeros((3, 2))}, [0, 1], {}, r"same number of examples.*\{'a': 3\}"),
        ({"a": np.zeros((0, 2))}, np.zeros(0), {}, "empty"),
        ({"a": np.zeros((2, 2))}, [0, 1], dict(batch_size=0), "`batch_size`"),
        ({"a": np.zeros((2, 2))}, [0, 1], dict(shuffle="yes"), "`shuffle`"),
        ({"a": np.zeros((2, 2))}, [0, 1], dict(seed=1.5), "`seed`"),
    ],
    ids=["list", "empty_dict", "sizes", "no_examples", "batch", "shuffle", "seed"],
)
def test_make_dataset_rejects_bad_inputs(x, y, kwargs, match):
    kwargs = {"batch_size": 2, "shuffle": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        pipelines.make_dataset(x, y, **kwargs)


def test_to_multihead_copies_the_label_and_keeps_sample_weights():
    x, y = _arrays(5)
    ds = pipelines.to_multihead(
        pipelines.make_dataset(x, y, batch_size=5, shuffle=False), ["a", "b", "fused"]
    )
    features, labels = next(iter(ds))
    assert sorted(labels) == ["a", "b", "fused"]
    for value in labels.values():
        np.testing.assert_array_equal(value, y)
    weighted = tf.data.Dataset.from_tensor_slices((x, y, np.ones(5))).batch(5)
    assert len(next(iter(pipelines.to_multihead(weighted, ["a", "fused"])))) == 3


@pytest.mark.parametrize(
    "dataset, heads, match",
    [
        (tf.data.Dataset.range(3), ["a"], "must be \\(features, label\\)"),
        (
            tf.data.Dataset.from_tensor_slices(({"a": [1.0]}, {"a": [0]})),
            ["a"],
            "labels must be a single tensor",
        ),
        (tf.data.Dataset.from_tensor_slices(({"a": [1.0]}, [0])), [], "non-empty"),
        (
            tf.data.Dataset.from_tensor_slices(({"a": [1.0]}, [0])),
            ["a", "a"],
            "unique",
        ),
    ],
    ids=["not_tuple", "dict_label", "no_heads", "duplicate_heads"],
)
def test_to_multihead_rejects_bad_inputs(dataset, heads, match):
    with pytest.raises(ValueError, match=match):
        pipelines.to_multihead(dataset, heads)


def test_tfrecord_round_trip_is_exact(tmp_path):
    x, y = _arrays(7)
    paths, spec = pipelines.write_tfrecord(tmp_path / "data.tfrecord", x, y)
    assert paths == [str(tmp_path / "data.tfrecord")]
    assert spec["b"] == tf.TensorSpec((2, 2), tf.uint8)
    assert spec["label"] == tf.TensorSpec((), tf.int32)
    ds = pipelines.tfrecord_dataset(paths, spec, batch_size=3, shuffle=False)
    batches = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b[0]["a"] for b in batches]), x["a"])
    np.testing.assert_array_equal(np.concatenate([b[0]["b"] for b in batches]), x["b"])
    assert _labels(ds) == y.tolist()
    assert ds.element_spec[0]["b"] == tf.TensorSpec((None, 2, 2), tf.uint8)


def test_tfrecord_shards_and_glob(tmp_path):
    x, y = _arrays(7)
    paths, spec = pipelines.write_tfrecord(tmp_path / "t", x, y, num_shards=3)
    assert [os.path.basename(p) for p in paths] == [
        "t-00000-of-00003",
        "t-00001-of-00003",
        "t-00002-of-00003",
    ]
    ds = pipelines.tfrecord_dataset(
        str(tmp_path / "t-*"), spec, batch_size=4, shuffle=True, seed=0, cache=True
    )
    assert sorted(_labels(ds)) == sorted(y.tolist())
    assert _chain(ds)[:4] == ["Prefetch", "Batch", "Shuffle", "Cache"]


def test_parse_example_fn_same_eagerly_and_in_map(tmp_path):
    x, y = _arrays(3)
    paths, spec = pipelines.write_tfrecord(tmp_path / "d", x, y)
    parse = pipelines.parse_example_fn(spec)
    records = list(tf.data.TFRecordDataset(paths).as_numpy_iterator())
    eager = [parse(tf.constant(r)) for r in records]
    mapped = list(tf.data.TFRecordDataset(paths).map(parse).as_numpy_iterator())
    for (fe, le), (fm, lm), i in zip(eager, mapped, range(3)):
        assert le.numpy() == lm == y[i]
        for m in x:
            np.testing.assert_array_equal(fe[m].numpy(), fm[m])
            np.testing.assert_array_equal(fm[m], x[m][i])


def test_tfrecord_mismatched_spec_fails_when_read(tmp_path):
    x, y = _arrays(3)
    paths, spec = pipelines.write_tfrecord(tmp_path / "d", x, y)
    wrong_dtype = {**spec, "a": tf.TensorSpec((3,), tf.float64)}
    ds = pipelines.tfrecord_dataset(paths, wrong_dtype, batch_size=2, shuffle=False)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="(?s)Type mismatch.*parse_feature_a"
    ):
        next(iter(ds))
    wrong_shape = {**spec, "a": tf.TensorSpec((4,), tf.float32)}
    ds = pipelines.tfrecord_dataset(paths, wrong_shape, batch_size=2, shuffle=False)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="(?s)Shape of tensor.*check_shape_a"
    ):
        next(iter(ds))
    extra = {**spec, "c": tf.TensorSpec((1,), tf.float32)}
    ds = pipelines.tfrecord_dataset(paths, extra, batch_size=2, shuffle=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: c"):
        next(iter(ds))


def test_tfrecord_bad_arguments(tmp_path):
    x, y = _arrays(3)
    paths, spec = pipelines.write_tfrecord(tmp_path / "d", x, y)
    with pytest.raises(ValueError, match="`paths` matched no file"):
        pipelines.tfrecord_dataset(
            tmp_path / "missing-*", spec, batch_size=2, shuffle=False
        )
    no_label = {k: v for k, v in spec.items() if k != "label"}
    with pytest.raises(ValueError, match="includes the label 'label'"):
        pipelines.tfrecord_dataset(paths, no_label, batch_size=2, shuffle=False)
    with pytest.raises(ValueError, match=r"`feature_spec\['a'\]` must be"):
        pipelines.tfrecord_dataset(
            paths, {**spec, "a": "float32"}, batch_size=2, shuffle=False
        )
    with pytest.raises(ValueError, match="clashes with a modality"):
        pipelines.write_tfrecord(tmp_path / "e", x, y, label_key="a")
    with pytest.raises(ValueError, match="`num_shards`"):
        pipelines.write_tfrecord(tmp_path / "e", x, y, num_shards=0)
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(ValueError, match="`num_examples` must be an int >= 1"):
        pipelines.tfrecord_dataset(
            tmp_path / "empty.tfrecord", spec, batch_size=2, shuffle=False
        )


def test_tfrecord_cardinality_is_known_and_checked(tmp_path):
    x, y = _arrays(5)
    paths, spec = pipelines.write_tfrecord(tmp_path / "d", x, y, num_shards=2)
    ds = pipelines.tfrecord_dataset(paths, spec, batch_size=2, shuffle=False)
    assert int(ds.cardinality()) == 3  # Keras knows the steps: no warning
    wrong = pipelines.tfrecord_dataset(
        paths, spec, batch_size=2, shuffle=False, num_examples=4
    )
    with pytest.raises(
        tf.errors.FailedPreconditionError, match="expected to contain 4 elements"
    ):
        list(wrong.as_numpy_iterator())


def test_write_tfrecord_unwritable_directory(tmp_path):
    x, y = _arrays(3)
    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(OSError, match="Cannot write TFRecord file"):
        pipelines.write_tfrecord(target / "d.tfrecord", x, y)


def _write_pngs(directory, stems, size=(6, 5)):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    images = {}
    for stem in stems:
        image = rng.integers(0, 256, size=(*size, 1)).astype("uint8")
        tf.io.write_file(str(directory / f"{stem}.png"), tf.io.encode_png(image))
        images[stem] = image
    return images


def test_image_map_fn_same_eagerly_and_in_map(tmp_path):
    images = _write_pngs(tmp_path, ["x", "y"])
    paths = [str(tmp_path / "x.png"), str(tmp_path / "y.png")]
    load = pipelines.image_map_fn(channels=1)
    eager = [load(p).numpy() for p in paths]
    mapped = list(
        tf.data.Dataset.from_tensor_slices(paths).map(load).as_numpy_iterator()
    )
    for e, m, stem in zip(eager, mapped, ["x", "y"]):
        np.testing.assert_array_equal(e, m)
        np.testing.assert_allclose(e, images[stem] / 255.0, atol=1e-7)
    resized = pipelines.image_map_fn(channels=3, size=(4, 4))(paths[0])
    assert resized.shape == (4, 4, 3) and resized.dtype == tf.float32
    graph = tf.data.Dataset.from_tensor_slices(paths).map(
        pipelines.image_map_fn(channels=3, size=(4, 4))
    )
    np.testing.assert_allclose(next(graph.as_numpy_iterator()), resized, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(channels=2), "`channels`"), (dict(dtype="uint8"), "floating dtype")],
)
def test_image_map_fn_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipelines.image_map_fn(**kwargs)


def test_wav_and_image_folders(tmp_path):
    """The documented recipe: pair a WAV folder with an image folder by name."""
    stems = sorted(p.stem for p in WAV_DIR.glob("*.wav"))
    _write_pngs(tmp_path / "image", stems, size=(8, 8))
    found, paths = pipelines.pair_files(
        {"audio": str(WAV_DIR / "*.wav"), "image": str(tmp_path / "image" / "*.png")}
    )
    assert found == stems
    labels = [int(stem.split("_")[0]) for stem in found]  # "7_theo_12" -> 7
    ds = pipelines.files_dataset(
        paths,
        labels,
        {"audio": audio.make_audio_map_fn(), "image": pipelines.image_map_fn()},
        batch_size=3,
        shuffle=False,
    )
    batches = list(ds.as_numpy_iterator())
    assert batches[0][0]["audio"].shape == (3, 49, 32)
    assert batches[0][0]["image"].shape == (3, 8, 8, 1)
    assert _labels(ds) == labels
    np.testing.assert_allclose(
        batches[0][0]["audio"][0],
        audio.wav_file_to_log_mel(paths["audio"][0]).numpy(),
        rtol=1e-6,
    )
    assert "Cache" in _chain(ds)


def test_pair_files_reports_unpaired_and_missing(tmp_path):
    _write_pngs(tmp_path / "image", ["0_george_0", "9_nobody_1"])
    with pytest.raises(ValueError, match="Unpaired.*9_nobody_1"):
        pipelines.pair_files(
            {"audio": str(WAV_DIR / "*.wav"), "image": str(tmp_path / "image/*.png")}
        )
    with pytest.raises(ValueError, match="matched no file"):
        pipelines.pair_files({"audio": str(tmp_path / "nothing/*.wav")})
    with pytest.raises(ValueError, match="same modality keys"):
        pipelines.files_dataset(
            {"audio": ["x.wav"]},
            [0],
            {"image": pipelines.image_map_fn()},
            batch_size=1,
            shuffle=False,
        )


def _model(x, num_classes=3, activation="relu"):
    branches = {
        m: keras.Sequential(
            [
                keras.Input(v.shape[1:]),
                keras.layers.Flatten(),
                keras.layers.Rescaling(1 / 255.0 if v.dtype == np.uint8 else 1.0),
                keras.layers.Dense(4, activation=activation),
            ],
            name=f"{m}_encoder",
        )
        for m, v in x.items()
    }
    # No dropout: 4-unit toy features; the test is about the pipelines.
    model = build_gblend_model(branches, num_classes=num_classes, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def test_gblend_model_trains_from_every_pipeline(tmp_path):
    x, y = _arrays(24)
    x["a"][:, 0] += 2.0 * y  # make the labels learnable
    paths, spec = pipelines.write_tfrecord(tmp_path / "train", x, y, num_shards=2)
    sources = {
        "arrays": pipelines.make_dataset(x, y, batch_size=8, shuffle=True, seed=0),
        "multihead": pipelines.to_multihead(
            pipelines.make_dataset(x, y, batch_size=8, shuffle=False),
            ["a", "b", "fused"],
        ),
        "tfrecord": pipelines.tfrecord_dataset(
            paths, spec, batch_size=8, shuffle=True, seed=0, cache=True
        ),
    }
    for name, dataset in sources.items():
        keras.utils.set_random_seed(0)
        model = _model(x)
        first, second = [({k: v[i::2] for k, v in x.items()}, y[i::2]) for i in (0, 1)]
        subset = pipelines.make_dataset(*first, batch_size=12, shuffle=False)
        heldout = pipelines.make_dataset(*second, batch_size=12, shuffle=False)
        callback = GBlendCallback(
            subset, heldout, warmup_epochs=0, super_epoch=1, verbose=0
        )
        with warnings.catch_warnings():
            # Toy data: weights may collapse; not what is tested.
            warnings.simplefilter("ignore", GBlendWarning)
            history = model.fit(
                dataset, epochs=4, shuffle=False, callbacks=[callback], verbose=0
            )
        # The heads' unweighted losses: the blended `loss` changes scale with
        # every re-weighting.
        logs = history.history
        losses = np.sum([logs[f"{h}_loss"] for h in model.head_names], axis=0)
        assert np.all(np.isfinite(losses)), name
        assert losses[-1] < losses[0], (name, losses)
        assert len(callback.estimates) == 4, name


def test_dataset_with_a_wrong_modality_name_is_rejected():
    x, y = _arrays(8)
    model = _model(x)
    renamed = pipelines.make_dataset(
        {"a": x["a"], "video": x["b"]}, y, batch_size=4, shuffle=False
    )
    with pytest.raises(ValueError, match=r"Missing data for input \"b\""):
        model.fit(renamed, epochs=1, shuffle=False, verbose=0)


def test_dataset_with_a_wrong_feature_shape_is_rejected():
    x, y = _arrays(8)
    model = _model(x)
    wrong = pipelines.make_dataset(
        {"a": x["a"][:, :2], "b": x["b"]}, y, batch_size=4, shuffle=False
    )
    with pytest.raises(ValueError, match=r"expected shape=\(None, 3\), found"):
        model.fit(wrong, epochs=1, shuffle=False, verbose=0)


def test_nan_features_in_a_measured_set_are_refused_before_training():
    x, y = _arrays(8)
    x["a"][0, 0] = np.nan
    clean = {k: v[4:] for k, v in x.items()}
    ds = pipelines.make_dataset(x, y, batch_size=4, shuffle=False)
    heldout = pipelines.make_dataset(clean, y[4:], batch_size=4, shuffle=False)
    # NaN in T' is named (set, modality, heads, example) instead of being blamed
    # on overfitting at the first estimate.
    model = _model(x, activation=None)
    before = [w.copy() for w in model.get_weights()]
    callback = GBlendCallback(ds, heldout, verbose=0)
    match = r"`train_subset` holds NaN.*'a' \(example 0\)"
    with pytest.raises(ValueError, match=match):
        model.fit(ds, epochs=1, shuffle=False, callbacks=[callback], verbose=0)
    for a, b in zip(before, model.get_weights()):  # Refused before any step.
        np.testing.assert_array_equal(a, b)


def test_empty_dataset_trains_nothing_and_keras_warns():
    x, y = _arrays(8)
    model = _model(x)
    empty = pipelines.make_dataset(x, y, batch_size=4, shuffle=False).take(0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.warns(UserWarning, match="Your input ran out of data"):
        history = model.fit(empty, epochs=1, shuffle=False, verbose=0)
    assert history.history == {}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_pipelines_are_split_by_source_and_reached_lazily_from_data():
    import keras_gblend.data as data_pkg
    from keras_gblend.data import datasets, files, tfrecord

    assert data_pkg.make_dataset is datasets.make_dataset is pipelines.make_dataset
    assert pipelines.write_tfrecord is tfrecord.write_tfrecord
    assert pipelines.files_dataset is files.files_dataset
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        data_pkg.no_such_thing  # noqa: B018
