"""The augmentation and kmeans stories end to end at tiny sizes, and the extra technique recipes piece by piece.

References: the recipes against the library functions they wrap and their documented formulas (a column's
Euclidean norm for group lasso, Keras' OrthogonalRegularizer via :func:`jaxreg.orthogonal`, plain batch norm
for batch renorm with ``r_max=1, d_max=0``, ``nn.Dense`` for DropConnect in evaluation mode); the k-means
story against scikit-learn's ``KMeans`` from the same initial centers.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg.cli import main
from jaxreg.experiments import UsageError
from jaxreg.experiments.models import MLP, BatchRenorm, DropConnectDense
from jaxreg.experiments import data, technique_programs
from jaxreg.experiments.techniques import (
    Recipe,
    extra_model_options,
    extra_penalties,
    parse_techniques,
    rotation_zoom,
)
from jaxreg.flax import linen as jrl

TINY = ["--epochs", "1", "--train-size", "32", "--eval-size", "32", "--batch-size", "16", "--quiet"]


def test_augmentation_story_trains_its_rows_and_the_mc_dropout_row(tmp_path):
    # One program (compilation dominates): the extra recipes and dropout in one run, which mc_predict re-scores.
    technique = "rotation_zoom+cutmix+group_lasso+orthogonal+drop_connect+dropout"
    assert main(["experiment", "augmentation", *TINY, "--hidden-sizes", "8", "--mc-samples", "2",
                 "--techniques", technique, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "augmentation"
    assert [r["technique"] for r in results["runs"]] == [technique]
    assert results["runs"][0]["settings"] == {"rotation_zoom": 15.0, "cutmix": 1.0, "group_lasso": 1e-3,
                                              "orthogonal": 0.01, "drop_connect": 0.5, "dropout": 0.5}
    (mc,) = results["evaluations"]
    assert mc["technique"] == f"{technique}, mc_predict" and mc["settings"] == {"mc_samples": 2}
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert abs(mc[key] * 32 - round(mc[key] * 32)) < 1e-6  # a fraction of the 32 examples
    assert "mc_predict" in (tmp_path / "report.md").read_text() and (tmp_path / "curves.png").exists()


def test_augmentation_story_refuses_what_the_mlp_cannot_use(capsys, tmp_path):
    assert main(["experiment", "augmentation", "--techniques", "drop_block", "--out", str(tmp_path)]) == 2
    assert "drop_block drops squares of convolutional feature maps" in capsys.readouterr().err


def test_kmeans_story_matches_sklearn_from_the_same_init(tmp_path):
    assert main(["experiment", "kmeans", "--size", "300", "--n-init", "2", "--iterations", "20", "--quiet",
                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {r["technique"]: r for r in results["runs"]}
    assert set(rows) == {"jax", "sklearn", "jax, same init", "sklearn, same init"}
    # Reference: scikit-learn's Lloyd iterations from the same k-means++ centers.
    ours, theirs = rows["jax, same init"], rows["sklearn, same init"]
    assert ours["inertia"] == pytest.approx(theirs["inertia"], rel=1e-4)
    assert ours["adjusted_rand"] == pytest.approx(theirs["adjusted_rand"], abs=1e-6)
    assert all(0.3 < r["purity"] <= 1.0 for r in rows.values())  # far above chance (about 0.1-0.2)


def test_the_less_common_techniques_parse_and_are_refused_where_the_model_has_no_place_for_them():
    names = "rotation_zoom,group_lasso,orthogonal,batch_renorm,drop_connect"
    parsed = dict(parse_techniques(names))
    assert parsed["rotation_zoom"].rotation_zoom == 15.0 and parsed["batch_renorm"].batch_norm
    with pytest.raises(UsageError, match="drop_connect"):
        parse_techniques("drop_connect=1.5")
    with pytest.raises(UsageError, match="one"):
        parse_techniques("batchnorm+batch_renorm")
    digits, tokens = data.info("digits"), data.info("synthetic_sequences")
    for name, model, info, message in [("batch_renorm", "cnn", digits, "use --model mlp"),
                                       ("drop_connect", "transformer", tokens, "use --model mlp"),
                                       ("group_lasso", "cnn", digits, "groups dense kernels"),
                                       ("rotation_zoom", "transformer", tokens, "needs images")]:
        with pytest.raises(UsageError, match=message):
            technique_programs.check_combination(name, parsed[name], model, info)


def test_group_lasso_and_orthogonal_penalties_follow_their_formulas():
    kernel = jnp.array([[3.0, 1.0], [4.0, 0.0]])
    params = {"Dense_0": {"kernel": kernel, "bias": jnp.array([10.0, 10.0])}}
    group, ortho = extra_penalties(Recipe(group_lasso=0.5, orthogonal=0.2))
    # Group lasso: 0.5 * (column norms 5 + 1); the bias is not a kernel.
    assert float(group.coefficient * group.fn(params, mask=group.mask)) == pytest.approx(3.0)
    # Orthogonal: 0.2 * |cosine| between the two columns, (3*1 + 4*0) / (5 * 1) = 0.6 (Keras' formula).
    assert float(ortho.coefficient * ortho.fn(params, mask=ortho.mask)) == pytest.approx(0.2 * 0.6, rel=1e-6)
    assert extra_penalties(Recipe()) == []


def test_rotation_zoom_rotates_and_zooms_like_the_library_ops():
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
    key = jax.random.key(1)
    rotate_key, zoom_key = jax.random.split(key)
    expected = jr.random_zoom(zoom_key, jr.random_rotation(rotate_key, x, 15.0), 0.1)
    np.testing.assert_array_equal(rotation_zoom(key, x, 15.0), expected)
    assert not np.allclose(rotation_zoom(key, x, 15.0), x)


def test_batch_renorm_is_batch_norm_at_r_max_1_and_d_max_0_and_in_evaluation():
    x = jax.random.normal(jax.random.key(0), (16, 3)) * 2.0 + 1.0
    renorm, norm = BatchRenorm(r_max=1.0, d_max=0.0), jrl.BatchNorm(momentum=0.9)
    variables = renorm.init(jax.random.key(0), x, use_running_average=False)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, norm.init(jax.random.key(0), x, use_running_average=False))
    y, updates = renorm.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    y_ref, updates_ref = norm.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["var"], updates_ref["batch_stats"]["var"], rtol=1e-5)
    np.testing.assert_allclose(renorm.apply(updates | {"params": variables["params"]}, x, use_running_average=True),
                               norm.apply(updates | {"params": variables["params"]}, x, use_running_average=True),
                               atol=1e-5)


def test_drop_connect_layers_keep_the_plain_mlps_weights_and_drop_kernel_entries():
    x = jnp.ones((2, 4))
    plain = MLP(num_outputs=3, hidden_sizes=(8,))
    dropped = MLP(num_outputs=3, hidden_sizes=(8,), **extra_model_options(Recipe(drop_connect=0.5)))
    variables = plain.init(jax.random.key(0), x, train=False)
    assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
        jnp.shape, dropped.init(jax.random.key(0), x, train=False))
    np.testing.assert_array_equal(dropped.init(jax.random.key(0), x, train=False)["params"]["Dense_0"]["kernel"],
                                  variables["params"]["Dense_0"]["kernel"])  # same names, same initial weights
    np.testing.assert_allclose(dropped.apply(variables, x, train=False), plain.apply(variables, x, train=False))
    layer = DropConnectDense(64, rate=0.5, use_bias=False)
    eye = jnp.eye(64)
    kernel = layer.init(jax.random.key(0), eye, train=False)["params"]["kernel"]
    out = layer.apply({"params": {"kernel": kernel}}, eye, train=True, rngs={"dropout": jax.random.key(2)})
    kept = np.asarray(out != 0)  # eye @ w_masked is the masked kernel: entries are 0 or 2 * w
    np.testing.assert_allclose(np.asarray(out)[kept], 2.0 * np.asarray(kernel)[kept], rtol=1e-6)
    assert 0.4 < kept.mean() < 0.6
