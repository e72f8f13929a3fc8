"""Tests for ``jaxreg datasets prepare`` (jaxreg.experiments.tfds_data.prepare), without network.

Offline is simulated by refusing every socket connection (as tests/test_data.py does): the command must fail
at once with one paragraph, never hang in TFDS' retries. The npz route is checked against what
``keras.datasets.mnist.load_data`` returns (stubbed: same structure, uint8 ``(n, 28, 28)`` images and
labels), read back through ``--dataset PATH.npz``; the array_record route against a data_dir genuinely
prepared by the real TFDS builder (nothing to download: it returns at once).
"""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from jaxreg.cli import main
from jaxreg.experiments import data, tfds_data


@pytest.fixture
def offline(monkeypatch):
    """Every connection attempt fails as it does without network (OSError)."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("file_format", ["array_record", "npz"])
def test_offline_prepare_fails_fast_with_one_paragraph(file_format, tmp_path, offline, capsys):
    start = time.perf_counter()
    argv = ["datasets", "prepare", "mnist", "--data-dir", str(tmp_path), "--format", file_format]
    if file_format == "npz":
        argv += ["--out", str(tmp_path / "m.npz")]
    assert main(argv) == 1
    assert time.perf_counter() - start < 10  # no retries
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("jaxreg: Could not prepare 'mnist'")
    for part in ("Tried:", "internet access to storage.googleapis.com", "MB of disk", "pip install",
                 "keras.datasets.mnist.load_data()", "np.savez('mnist.npz'", "--dataset mnist.npz", "--data-dir DIR",
                 "--dataset digits"):
        assert part in err, part
    assert not any(tmp_path.iterdir())  # nothing written


def test_prepare_npz_writes_what_dataset_path_reads(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # as prepare() itself defaults it: no TensorFlow here
    import keras

    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), (np.arange(20) % 10).astype(np.uint8))
    test = (rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), (np.arange(10) % 10).astype(np.uint8))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: (train, test))
    monkeypatch.setattr(tfds_data, "_reachable", lambda host, timeout: True)
    out = tfds_data.prepare("mnist", file_format="npz", out=tmp_path / "mnist.npz")
    assert out == tmp_path / "mnist.npz"
    info = data.info(str(out))
    assert (info.input_shape, info.num_classes, info.task) == ((28, 28, 1), 10, "classification")
    x, y = data.load(str(out), split="test")
    np.testing.assert_array_equal(x[..., 0], test[0].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, test[1])


def test_prepare_returns_an_already_prepared_data_dir_without_network(tmp_path, offline):
    import tensorflow_datasets as tfds
    from PIL import Image

    base = tfds.builder_cls("mnist")
    examples = [{"image": Image.fromarray(np.full((28, 28), i, np.uint8)), "label": i % 10} for i in range(6)]

    class Tiny(base, skip_registration=True):
        def _split_generators(self, dl_manager):
            return {"train": enumerate(examples[:4]), "test": enumerate(examples[4:])}

    Tiny.name = base.name
    Tiny(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    where = tfds_data.prepare("mnist", data_dir=tmp_path)
    assert where.parent == tmp_path / "mnist" and (where / "dataset_info.json").is_file()
    assert data.info("mnist", data_dir=tmp_path).offline


def test_prepare_rejects_unknown_names_and_formats(capsys):
    with pytest.raises(ValueError, match="name"):
        tfds_data.prepare("imdb_reviews")
    with pytest.raises(ValueError, match="file_format"):
        tfds_data.prepare("mnist", file_format="tfrecord")
    assert main(["datasets", "prepare", "mnist", "--out", "x.npz"]) == 2  # --out needs --format npz
    assert "--out applies only to --format npz" in capsys.readouterr().err


def test_datasets_listing_says_how_to_prepare(tmp_path, capsys):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| diabetes " in captured.out and "| bundled " in captured.out
    assert "jaxreg datasets prepare NAME" in captured.err and "--dataset PATH.npz" in captured.err
