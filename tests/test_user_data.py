"""Tests for jaxreg.experiments.user_data: ``--dataset PATH.npz``, through ``jr.data`` and the CLI.

References: the arrays written with ``numpy.savez`` themselves (values, shapes and dtypes read back), and
scikit-learn's ``train_test_split`` (the carved validation split is its seeded, stratified 20%).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from jaxreg.cli import main
from jaxreg.experiments import arguments, data, user_data


def _classification_arrays(n_train: int = 40, n_test: int = 12, features: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.standard_normal((n_train, features)).astype(np.float32),
        "y_train": np.arange(n_train) % 3,
        "x_test": rng.standard_normal((n_test, features)).astype(np.float32),
        "y_test": np.arange(n_test) % 3,
    }


def _save(tmp_path, name: str = "mine.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def test_classification_npz_carves_a_seeded_stratified_validation_split(tmp_path):
    arrays = _classification_arrays()
    path = _save(tmp_path, **arrays)
    info = data.info(path)
    assert (info.name, info.source, info.task, info.num_classes, info.num_outputs) == (path, "file", "classification",
                                                                                    3, 3)
    assert info.input_shape == (4,) and info.offline and "32/8/12" in info.description
    x_tr, y_tr = data.load(path, split="train", seed=5)
    x_va, y_va = data.load(path, split="validation", seed=5)
    x_te, y_te = data.load(path, split="test", seed=5)
    assert y_tr.dtype == np.int32 and x_tr.dtype == np.float32 and (len(y_tr), len(y_va)) == (32, 8)
    np.testing.assert_array_equal(x_te, arrays["x_test"])
    np.testing.assert_array_equal(y_te, arrays["y_test"])
    # Reference: scikit-learn's stratified 20% with the same seed, rows in file order.
    train, validation = train_test_split(np.arange(40), test_size=8, random_state=5, stratify=arrays["y_train"])
    np.testing.assert_array_equal(x_tr, arrays["x_train"][np.sort(train)])
    np.testing.assert_array_equal(y_va, arrays["y_train"][np.sort(validation)])
    assert not np.array_equal(data.load(path, split="validation", seed=6)[0], x_va)


def test_regression_and_images_and_explicit_validation(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 3))
    path = _save(tmp_path, "reg.npz", x_train=x, y_train=x.sum(1), x_test=x[:5], y_test=x[:5].sum(1),
                 x_val=x[5:9], y_val=x[5:9].sum(1))
    info = data.info(path)
    assert (info.task, info.num_classes, info.num_outputs) == ("regression", None, 1)
    x_va, y_va = data.load(path, split="validation", seed=3)
    assert y_va.shape == (4, 1) and y_va.dtype == np.float32
    np.testing.assert_allclose(y_va[:, 0], x[5:9].sum(1), rtol=1e-6)
    assert len(data.load(path, split="train")[1]) == 20  # all of train: validation came from the file
    # uint8 (n, H, W), as keras.datasets.mnist returns it: NHWC pixels / 255.
    pixels = rng.integers(0, 256, (10, 6, 6), dtype=np.uint8)
    labels = np.arange(10, dtype=np.uint8) % 2
    image_path = _save(tmp_path, "img.npz", x_train=pixels, y_train=labels, x_test=pixels, y_test=labels[:, None])
    x_te, y_te = data.load(image_path, split="test")
    assert x_te.shape == (10, 6, 6, 1) and y_te.shape == (10,)
    np.testing.assert_array_equal(x_te[..., 0], pixels.astype(np.float32) / np.float32(255))
    assert data.info(image_path).input_shape == (6, 6, 1)


def test_task_override_turns_integral_floats_into_classes(tmp_path):
    arrays = _classification_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    arrays["y_test"] = arrays["y_test"].astype(np.float64)
    path = _save(tmp_path, **arrays)
    assert data.info(path).task == "regression"
    assert data.info(path, task="classification").num_classes == 3
    _, y = data.load(path, split="test", task="classification")
    assert y.dtype == np.int32 and y.tolist() == arrays["y_test"].astype(int).tolist()
    user_data.set_task(path, "classification")  # what the CLI's --task does
    try:
        assert data.info(path).task == "classification"
    finally:
        user_data.set_task(path, None)
    assert data.info(path).task == "regression"


@pytest.mark.parametrize("change, task, message", [
    (lambda a: a.pop("y_test"), None, "missing array 'y_test'"),
    (lambda a: a.update(y_train=a["y_train"][:-1]), None, "x_train has 40 examples but y_train has 39"),
    (lambda a: a.update(x_test=a["x_test"][:, :3]), None, r"x_test examples have shape \(3,\), x_train's \(4,\)"),
    (lambda a: a["x_train"].__setitem__((0, 0), np.nan), None, "'x_train' holds NaN"),
    (lambda a: a.update(y_test=a["y_test"] - 1), None, "y_test holds negative labels"),
    (lambda a: a.update(y_train=a["y_train"] + 0.5), "classification", "y_train holds non-integral labels"),
    (lambda a: a.update(x_val=a["x_test"]), None, "missing array 'y_val'"),
    (lambda a: a.update(x_train=np.array([object()] * 40)), None, "'x_train' holds Python objects"),
])
def test_malformed_files_are_one_line_errors_naming_file_and_array(tmp_path, change, task, message):
    arrays = _classification_arrays()
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message) as err:
        data.info(str(path), task=task)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="no such file"):
        data.info(str(tmp_path / "nope.npz"))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 3)).astype(np.float32)
    regression = _save(tmp_path, "reg.npz", x_train=x, y_train=x[:, 0], x_test=x, y_test=x[:, 0])
    cases = [
        (["experiment", "dropout_mlp", "--dataset", regression], "needs a classification dataset"),
        (["compare", "--dataset", str(tmp_path / "missing.npz")], "no such file"),
        (["compare", "--dataset", "digits", "--task", "regression"], "--task applies only to --dataset PATH.npz"),
    ]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_compare_config_and_splits_accept_a_user_npz(tmp_path):
    """The route `jaxreg compare --dataset PATH.npz` takes, short of training (a full run costs ~10 s)."""
    import argparse

    from jaxreg.experiments import compare, runner

    path = _save(tmp_path, **_classification_arrays())
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    config = compare.config_from_args(parser.parse_args(["--dataset", path, "--out", str(tmp_path / "out")]))
    assert config.dataset == path
    splits = runner.load_splits(path, seed=0, batch_size=8)
    assert splits.info.source == "file" and [len(s[1]) for s in (splits.train, splits.validation, splits.test)] == [
        32, 8, 12]


def test_check_story_arguments_routes_task_to_the_file(tmp_path):
    arrays = _classification_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float32)
    arrays["y_test"] = arrays["y_test"].astype(np.float32)
    path = _save(tmp_path, **arrays)
    args = argparse_namespace(path, task="classification", out=str(tmp_path / "o"))
    try:
        info = arguments.check_story_arguments(args)
        assert info.task == "classification" and data.load(path, split="train")[1].dtype == np.int32
    finally:
        user_data.set_task(path, None)


def argparse_namespace(dataset: str, **kwargs):
    import argparse

    parser = argparse.ArgumentParser()
    arguments.add_story_arguments(parser)
    args = parser.parse_args(["--dataset", dataset])
    for key, value in kwargs.items():
        setattr(args, key, value)
    return args
