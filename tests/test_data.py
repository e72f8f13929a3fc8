"""Tests for jaxreg.experiments.data.

References: scikit-learn's ``load_digits`` (digit values), numpy least squares (the regression is fittable),
a numpy restatement of the sequence rule, scikit-learn's ``LogisticRegression`` on token counts (the
sequence task is not a bag-of-words task), and TFDS itself: ``tfds.testing.mock_data`` examples read back
through ``tfds.data_source``, and tiny datasets genuinely written as ArrayRecord by the real TFDS builders
(images PNG-encoded, text UTF-8), so the read path is exercised end to end without network or TensorFlow.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import jaxreg as jr

data = jr.data

TFDS_IMAGE = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
TFDS_TEXT = {"ag_news_subset": 128, "imdb_reviews": 512}
# Conventional per-channel statistics of the [0, 1] pixels (PyTorch examples / published CIFAR-10 values).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a host fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("jaxreg.experiments.data tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ----------------------------------------------------------------------------------------------------------
# digits
# ----------------------------------------------------------------------------------------------------------


def test_digits_splits_shapes_ranges_and_sizes():
    sizes = {}
    for split in data.SPLITS:
        x, y = data.load("digits", split=split)
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.shape == (y.shape[0], 8, 8, 1)
        assert x.min() == 0.0 and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
        sizes[split] = y.shape[0]
    # 25 / 25 / 50 of 1797: a deliberately small training set.
    assert sizes == {"train": 449, "validation": 449, "test": 899}


def test_digits_matches_sklearn_and_partitions_without_overlap():
    """Each split is sklearn's load_digits images / 16 at split_indices' indices; they partition 1797."""
    ref = load_digits()
    parts = data.split_indices(ref.target, fractions=(0.25, 0.25, 0.5), seed=3)
    all_idx = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(all_idx), np.arange(1797))
    row_sets = []
    for split, idx in zip(data.SPLITS, parts):
        x, y = data.load("digits", split=split, seed=3)
        np.testing.assert_array_equal(x[..., 0], ref.images[idx].astype(np.float32) / 16)
        np.testing.assert_array_equal(y, ref.target[idx])
        row_sets.append({row.tobytes() for row in x})
    # Independently of the indices: digits has no duplicate images, so hashed rows must also partition.
    assert len({row.tobytes() for row in ref.images.astype(np.float32) / 16}) == 1797
    assert sum(len(s) for s in row_sets) == 1797
    assert len(set.union(*row_sets)) == 1797


def test_digits_is_deterministic_in_seed_and_fractions_are_options():
    x0, y0 = data.load("digits", split="train", seed=0)
    x0b, y0b = data.load("digits", split="train", seed=0)
    x1, _ = data.load("digits", split="train", seed=1)
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    assert not np.array_equal(x0, x1)
    x0[:] = -1.0  # returned arrays are the caller's: the in-process cache must not be affected
    np.testing.assert_array_equal(data.load("digits", split="train", seed=0)[0], x0b)
    fractions = {"train_fraction": 0.6, "validation_fraction": 0.2}
    sizes = [data.load("digits", split=s, **fractions)[1].shape[0] for s in data.SPLITS]
    assert sizes == [1078, 360, 359]  # round(0.6 * 1797), round(0.8 * 1797) - 1078, the rest


def test_split_indices_is_stratified():
    """Per-class counts in every part are within one example of fraction * class count (numpy bincount)."""
    labels = load_digits().target
    class_counts = np.bincount(labels)
    for seed in range(5):
        for fractions in [(0.25, 0.25, 0.5), (0.9, 0.1)]:
            parts = data.split_indices(labels, fractions=fractions, seed=seed)
            for part, frac in zip(parts, fractions):
                assert np.abs(np.bincount(labels[part], minlength=10) - frac * class_counts).max() <= 1.0


# ----------------------------------------------------------------------------------------------------------
# scikit-learn's other bundled sets
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, loader, stratify, sizes", [
    ("diabetes", "load_diabetes", False, (300, 53, 89)),
    ("breast_cancer", "load_breast_cancer", True, (341, 114, 114)),
    ("wine", "load_wine", True, (106, 36, 36)),
])
def test_tabular_sets_match_sklearn_splits_and_train_standardization(name, loader, stratify, sizes):
    """Reference: scikit-learn's loader, train_test_split (test first) and StandardScaler fit on train."""
    import sklearn.datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x_all, y_all = getattr(sklearn.datasets, loader)(return_X_y=True, **({"scaled": False} if not stratify else {}))
    idx = np.arange(len(y_all))
    rest, test = train_test_split(idx, test_size=0.2, random_state=4, stratify=y_all if stratify else None)
    train, validation = train_test_split(rest, test_size=sizes[1], random_state=4,
                                         stratify=y_all[rest] if stratify else None)
    scaler = StandardScaler().fit(x_all[train])
    for split, part, n in zip(data.SPLITS, (train, validation, test), sizes):
        x, y = data.load(name, split=split, seed=4)
        assert len(y) == n and x.dtype == np.float32
        np.testing.assert_allclose(x, scaler.transform(x_all[part]), rtol=1e-5, atol=1e-5)
        if stratify:
            np.testing.assert_array_equal(y, y_all[part])
        else:  # the target too, with train statistics: MSE in units of the target's variance
            target = StandardScaler().fit(y_all[train, None])
            np.testing.assert_allclose(y, target.transform(y_all[part, None]), rtol=1e-5, atol=1e-5)
    assert not np.array_equal(data.load(name, split="test", seed=5)[1], data.load(name, split="test", seed=4)[1])


def test_sample_images_are_crops_of_the_two_photos_from_disjoint_bands():
    """Reference: scikit-learn's load_sample_images; every crop is found in its photo's band of columns."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    x, y = data.load("sample_images", split="validation", seed=0, n_validation=8)
    assert x.shape == (8, 32, 32, 3) and y.tolist() == [0] * 4 + [1] * 4
    width = photos[0].shape[1]
    for crop, label in zip(x, y):
        pixels = np.rint(crop * 255).astype(np.uint8)
        photo = photos[label]
        hits = [(r, c) for r in range(photo.shape[0] - 31) for c in range(int(0.6 * width), int(0.8 * width) - 31)
                if photo[r, c, 0] == pixels[0, 0, 0] and np.array_equal(photo[r:r + 32, c:c + 32], pixels)]
        assert hits
    np.testing.assert_array_equal(x, data.load("sample_images", split="validation", seed=0, n_validation=8)[0])
    with pytest.raises(ValueError, match="n_train must be even"):
        data.load("sample_images", split="train", n_train=3)


# ----------------------------------------------------------------------------------------------------------
# synthetic sets
# ----------------------------------------------------------------------------------------------------------


def test_synthetic_regression_shapes_determinism_and_least_squares_fit():
    """numpy lstsq on train reaches R^2 > 0.9 on test; the residual std matches noise_std = 0.5."""
    splits = {s: data.load("synthetic_regression", split=s, seed=7) for s in data.SPLITS}
    for s, n in zip(data.SPLITS, (100, 1000, 1000)):
        x, y = splits[s]
        assert x.shape == (n, 10) and y.shape == (n, 1)
        assert x.dtype == np.float32 and y.dtype == np.float32  # regression labels are float
    again = data.load("synthetic_regression", split="train", seed=7)
    np.testing.assert_array_equal(splits["train"][0], again[0])
    assert not np.array_equal(splits["train"][0], data.load("synthetic_regression", split="train", seed=8)[0])
    assert not np.array_equal(splits["validation"][0], splits["test"][0])

    x_tr, y_tr = splits["train"]
    x_te, y_te = splits["test"]
    w, *_ = np.linalg.lstsq(x_tr.astype(np.float64), y_tr.astype(np.float64), rcond=None)
    r2 = 1 - np.sum((y_te - x_te @ w) ** 2) / np.sum((y_te - y_te.mean()) ** 2)
    assert r2 > 0.9
    # w is shared across splits: a fit on train + validation (1100 rows) leaves ~ the noise on test.
    x_fit = np.concatenate([x_tr, splits["validation"][0]]).astype(np.float64)
    y_fit = np.concatenate([y_tr, splits["validation"][1]]).astype(np.float64)
    w, *_ = np.linalg.lstsq(x_fit, y_fit, rcond=None)
    assert abs(np.std(y_te - x_te @ w) - 0.5) < 0.05  # sd of a 1000-sample std ~ 0.011: > 4 sigma slack


def test_synthetic_sequences_rule_and_not_bag_of_words():
    x, y = data.load("synthetic_sequences", split="train", seed=0)
    assert x.shape == (2000, 16) and x.dtype == np.int32 and y.shape == (2000,) and y.dtype == np.int32
    assert x.min() >= 1 and x.max() <= 31  # 0 (padding) never appears
    np.testing.assert_array_equal(x, data.load("synthetic_sequences", split="train", seed=0)[0])
    assert not np.array_equal(x, data.load("synthetic_sequences", split="train", seed=1)[0])
    # numpy restatement of the rule: label 1 iff the first token occurs again (exactly once more).
    repeats = (x[:, 1:] == x[:, :1]).sum(axis=1)
    np.testing.assert_array_equal(y, (repeats > 0).astype(np.int32))
    assert set(np.unique(repeats)) == {0, 1}
    assert abs(y.mean() - 0.5) < 4 * 0.5 / np.sqrt(2000)
    # Not trivial: a linear model on token counts (order and position ignored) stays near chance.
    x_te, y_te = data.load("synthetic_sequences", split="test", seed=0)

    def counts(tokens):
        return np.stack([np.bincount(row, minlength=32) for row in tokens]).astype(np.float64)

    clf = LogisticRegression(max_iter=2000).fit(counts(x), y)
    assert clf.score(counts(x_te), y_te) < 0.6


def test_synthetic_sequences_label_noise_and_options():
    options = {"n_test": 20000, "length": 8, "vocab_size": 12, "label_noise": 0.2}
    x, y = data.load("synthetic_sequences", split="test", **options)
    assert x.shape == (20000, 8) and x.max() <= 11
    clean = (x[:, 1:] == x[:, :1]).any(axis=1)
    flipped = np.mean(y != clean)
    assert abs(flipped - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20000)


# ----------------------------------------------------------------------------------------------------------
# metadata, listing, argument errors
# ----------------------------------------------------------------------------------------------------------


BUNDLED = ["digits", "diabetes", "breast_cancer", "wine", "iris", "sample_images"]


@pytest.mark.parametrize("name", [*BUNDLED, "synthetic_regression", "synthetic_sequences"])
def test_info_matches_loaded_arrays(name):
    i = data.info(name)
    x, y = data.load(name, split="validation")
    assert i.name == name and i.offline
    assert x.shape[1:] == i.input_shape and str(x.dtype) == i.input_dtype
    if i.task == "regression":
        assert i.num_classes is None and y.shape[1:] == (i.num_outputs,)
    else:
        assert i.num_outputs == i.num_classes == len(np.unique(y))
    if i.vocab_size is not None:
        assert x.max() < i.vocab_size


def test_listing_on_an_empty_data_dir(tmp_path):
    infos = data.list_datasets(data_dir=tmp_path)
    assert [i.name for i in infos] == [
        *BUNDLED, "synthetic_regression", "synthetic_sequences", *TFDS_IMAGE, *TFDS_TEXT,
    ]
    assert data.available(data_dir=tmp_path) == [*BUNDLED, "synthetic_regression", "synthetic_sequences"]
    assert {i.name for i in infos if i.source == "bundled"} == set(BUNDLED)
    assert data.info("cifar10", data_dir=tmp_path) == data.DatasetInfo(
        "cifar10", (32, 32, 3), 10, "classification", False, 10, "float32", None, "tfds",
        data.info("cifar10", data_dir=tmp_path).description,
    )
    assert data.info("ag_news_subset").vocab_size == 257
    assert data.DEFAULT_DATASET == "digits"


def test_argument_errors():
    with pytest.raises(ValueError, match="Unknown dataset name = 'mnst'.*digits.*cifar10"):
        data.load("mnst", split="train")
    with pytest.raises(ValueError, match="Unknown dataset"):
        data.info("mnst")
    with pytest.raises(ValueError, match="split"):
        data.load("digits", split="valid")
    with pytest.raises(ValueError, match="seed"):
        data.load("digits", split="train", seed=-1)
    with pytest.raises(TypeError, match="foo.*train_fraction, validation_fraction"):
        data.load("digits", split="train", foo=1)
    with pytest.raises(ValueError, match="train_fraction"):
        data.load("digits", split="train", train_fraction=0.0)
    with pytest.raises(ValueError, match="train_fraction \\+ validation_fraction"):
        data.load("digits", split="train", train_fraction=0.7, validation_fraction=0.3)
    with pytest.raises(ValueError, match="noise_std"):
        data.load("synthetic_regression", split="train", noise_std=-1.0)
    with pytest.raises(ValueError, match="label_noise"):
        data.load("synthetic_sequences", split="train", label_noise=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        data.load("synthetic_sequences", split="train", vocab_size=2)
    with pytest.raises(ValueError, match="fractions"):
        data.split_indices(np.zeros(10), fractions=(0.5, 0.6))
    with pytest.raises(ValueError, match="max_length"):
        data.byte_tokenize(["a"], max_length=0)


def test_byte_tokenize_matches_python_utf8():
    texts = ["héllo", b"ab", ""]
    tokens = data.byte_tokenize(texts, max_length=5)
    expected = np.zeros((3, 5), np.int32)
    for row, text in enumerate(texts):
        raw = list(text.encode("utf-8") if isinstance(text, str) else text)[:5]
        expected[row, : len(raw)] = [b + 1 for b in raw]
    np.testing.assert_array_equal(tokens, expected)
    assert tokens.dtype == np.int32


# ----------------------------------------------------------------------------------------------------------
# TFDS: offline error
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*TFDS_IMAGE, *TFDS_TEXT])
def test_unprepared_tfds_set_fails_fast_without_network(name, tmp_path, no_network):
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load(name, split="train", data_dir=tmp_path)
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert "\n" not in message  # one paragraph
    for part in (repr(name), str(tmp_path), f"tfds build {name}", "array_record", "--dataset digits"):
        assert part in message
    assert not any(tmp_path.iterdir())  # nothing was downloaded or created


def test_tfrecord_only_preparation_gets_a_hint(tmp_path, no_network):
    version_dir = tmp_path / "mnist" / "3.0.1"
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{}")
    (version_dir / "mnist-train.tfrecord-00000-of-00001").touch()
    with pytest.raises(data.DatasetUnavailableError, match="TFRecord files were found"):
        data.load("mnist", split="test", data_dir=tmp_path)


# ----------------------------------------------------------------------------------------------------------
# TFDS: tfds.testing.mock_data through tfds.data_source
# ----------------------------------------------------------------------------------------------------------


def _mark_prepared(data_dir: Path, name: str) -> None:
    """The files jaxreg looks for before calling tfds.data_source (mock_data then serves the examples)."""
    version_dir = Path(tfds.builder(name, data_dir=str(data_dir)).data_dir)  # TFDS's own layout
    version_dir.mkdir(parents=True)
    (version_dir / "dataset_info.json").write_text("{}")
    for split in ("train", "test"):
        (version_dir / f"{name}-{split}.array_record-00000-of-00001").touch()


@pytest.mark.parametrize("name", list(TFDS_IMAGE))
def test_mock_tfds_images_are_scaled_and_standardized(name, tmp_path, no_network):
    _mark_prepared(tmp_path, name)
    assert name in data.available(data_dir=tmp_path)
    with tfds.testing.mock_data(num_examples=30):
        source = tfds.data_source(name, split="test")
        raw = np.stack([source[i]["image"] for i in range(30)])
        raw_labels = np.array([source[i]["label"] for i in range(30)])
        x, y = data.load(name, split="test", data_dir=tmp_path)
        x_std, _ = data.load(name, split="test", data_dir=tmp_path, standardize=True)
        x_tr, _ = data.load(name, split="train", data_dir=tmp_path, seed=1)
        x_va, _ = data.load(name, split="validation", data_dir=tmp_path, seed=1)
    assert x.shape == (30, *TFDS_IMAGE[name]) and x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, raw.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, raw_labels)
    mean, std = (np.asarray(v, np.float32) for v in STATS[name])
    np.testing.assert_allclose(x_std, (raw / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
    # Mock train = the same 30 examples: validation is 10% of them, and the two partition them.
    assert (x_tr.shape[0], x_va.shape[0]) == (27, 3)
    rows = {r.tobytes() for r in x}
    assert {r.tobytes() for r in np.concatenate([x_tr, x_va])} == rows


@pytest.mark.parametrize("name", list(TFDS_TEXT))
def test_mock_tfds_text_is_byte_tokenized(name, tmp_path, no_network):
    _mark_prepared(tmp_path, name)
    keys = ("title", "description") if name == "ag_news_subset" else ("text",)
    with tfds.testing.mock_data(num_examples=10):
        source = tfds.data_source(name, split="test")
        texts = [" ".join(str(source[i][k]) for k in keys) for i in range(10)]
        x, y = data.load(name, split="test", data_dir=tmp_path, max_length=40)
    assert x.shape == (10, 40) and x.dtype == np.int32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, data.byte_tokenize(texts, max_length=40))
    assert data.info(name).input_shape == (TFDS_TEXT[name],)


# ----------------------------------------------------------------------------------------------------------
# TFDS: tiny datasets genuinely prepared as ArrayRecord by the real builders (no mocks)
# ----------------------------------------------------------------------------------------------------------


def _prepare(name: str, data_dir: Path, examples: dict[str, list[dict]], **builder_kwargs) -> None:
    """Write ``examples`` with the real TFDS builder of ``name`` (its features, encoders and file layout)."""
    base = tfds.builder_cls(name)

    class Tiny(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {split: enumerate(exs) for split, exs in examples.items()}

    Tiny.name = base.name
    Tiny(data_dir=str(data_dir), file_format="array_record", **builder_kwargs).download_and_prepare()


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_prepared_array_record_images_round_trip(name, tmp_path, no_network):
    from PIL import Image

    shape = TFDS_IMAGE[name]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, *shape), dtype=np.uint8)
    labels = images[:, 0, 0, 0] % 10  # ties each label to its image, so pairs survive TFDS's shuffling

    def example(i):
        img = Image.fromarray(images[i][..., 0] if shape[-1] == 1 else images[i])
        return {"image": img, "label": int(labels[i])} | ({"id": f"id{i}"} if name == "cifar10" else {})

    examples = [example(i) for i in range(50)]
    _prepare(name, tmp_path, {"train": examples[:40], "test": examples[40:]})
    assert name in data.available(data_dir=tmp_path) and data.info(name, data_dir=tmp_path).offline

    x, y = data.load(name, split="test", data_dir=tmp_path)
    assert x.shape == (10, *shape) and x.dtype == np.float32 and y.dtype == np.int32
    pixels = np.rint(x * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels.astype(np.float32) / np.float32(255), x)  # exactly k / 255
    assert {(p.tobytes(), int(l)) for p, l in zip(pixels, y)} == {
        (images[i].tobytes(), int(labels[i])) for i in range(40, 50)
    }
    x_tr, y_tr = data.load(name, split="train", data_dir=tmp_path, seed=0)
    x_va, y_va = data.load(name, split="validation", data_dir=tmp_path, seed=0)
    assert (len(y_tr), len(y_va)) == (36, 4)
    x_all, y_all = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
    got = {(np.rint(p * 255).astype(np.uint8).tobytes(), int(l)) for p, l in zip(x_all, y_all)}
    assert got == {(images[i].tobytes(), int(labels[i])) for i in range(40)}
    np.testing.assert_array_equal(x_va, data.load(name, split="validation", data_dir=tmp_path, seed=0)[0])


@pytest.mark.parametrize("name", list(TFDS_TEXT))
def test_prepared_array_record_text_round_trip(name, tmp_path, no_network):
    titles = [f"report {i}:" for i in range(12)]
    bodies = [f"café ünïcode {'x' * i}" for i in range(12)]
    pairs = list(enumerate(zip(titles, bodies)))
    if name == "ag_news_subset":  # jaxreg joins title and description with one space
        rows = [{"title": t, "description": b, "label": i % 4} for i, (t, b) in pairs]
        kwargs = {}
    else:
        rows = [{"text": f"{t} {b}", "label": i % 2} for i, (t, b) in pairs]
        kwargs = {"config": "plain_text"}
    texts = [f"{t} {b}" for t, b in zip(titles, bodies)]
    _prepare(name, tmp_path, {"train": rows[:8], "test": rows[8:]}, **kwargs)
    assert data.info(name, data_dir=tmp_path).offline

    x, y = data.load(name, split="test", data_dir=tmp_path, max_length=64)
    assert x.shape == (4, 64) and x.dtype == np.int32
    decoded = {bytes((row[row > 0] - 1).astype(np.uint8)).decode("utf-8") for row in x}
    assert decoded == set(texts[8:])
    label_of = {texts[i]: rows[i]["label"] for i in range(12)}
    for row, label in zip(x, y):
        assert label_of[bytes((row[row > 0] - 1).astype(np.uint8)).decode("utf-8")] == label
