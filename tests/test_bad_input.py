"""Bad hyperparameters, walked over every public function of jaxreg (issue 15).

Each function of ``jaxreg.__all__`` that takes a hyperparameter gets (a) an array of the wrong shape where a
scalar (or another shape) is expected and (b) a NaN. Both must be refused by jaxreg itself: a ``ValueError``
or ``TypeError`` whose message names the argument, raised in a jaxreg module (the raising frame of the
traceback), not by JAX's broadcasting or by numpy's truth value of an array deep inside a computation.
Before this walk, 51 of these cases, in 29 functions, returned a wrong-shaped result, silently read NaN as
True, or died inside JAX or numpy (penalty and transform strengths of shape (3,), bool flags given arrays or
NaN, masks holding arrays or NaN, a (3,) penalty coefficient, NaN angles and shifts, ``shuffle_key``'s
epoch...).

The table of cases is explicit, and ``test_every_public_function_is_walked_or_excluded`` fails when a name is
added to ``jaxreg.__all__`` without a case here or a justified exclusion. Bad keys are walked separately, in
``tests/test_contract.py`` (``KEYED_FUNCTIONS``). Every call is tiny and refused before any compilation.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr

PACKAGE = pathlib.Path(jr.__file__).parent
NAN = float("nan")
KEY = jax.random.key(0)
X = jnp.ones((2, 6))  # features
IMAGES = jnp.ones((2, 5, 5, 3))  # NHWC, batch 2: a per-example hyperparameter has shape (2,), not (3,)
LABELS = jax.nn.one_hot(jnp.arange(2), 3)
TREE = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
BN_PARAMS, BN_STATE = jr.batch_norm_init(6)
TX = optax.sgd(0.1)


def _vec(value: Any) -> jax.Array:
    """A length-3 array of ``value``: never a scalar, a pair, or one value per example of a batch of 2."""
    return jnp.full((3,), value)


def _apply(params, model_state, x, *, key, training):
    return x @ params["w"], model_state


def _loss(outputs, y):
    return (outputs - y) ** 2


def _state() -> jr.TrainState:
    return jr.create_train_state({"w": jnp.zeros((6, 1))}, TX, KEY)


STEP = jr.make_train_step(_apply, _loss, TX, jit=False)
EVAL = jr.make_eval_step(_apply, _loss, jit=False)
DATA = (X, jnp.zeros((2, 1)))


class Case(NamedTuple):
    fn: str  # the public name, in jaxreg.__all__
    arg: str  # the hyperparameter: its name must appear in the message
    call: Callable[[Any], Any]  # call(value) calls the function with `value` for `arg`
    wrong_shape: Any  # an array of a shape the argument does not take
    nan: Any = NAN  # the NaN form of the argument, or None when NaN is data there (see NAN_IS_DATA)


CASES = [
    # select and penalties
    Case("path_mask", "include", lambda v: jr.path_mask(TREE, include=v), np.array(["a", "b", "c"])),
    Case("l1", "mask", lambda v: jr.l1(TREE, mask=v), _vec(True)),
    Case("l2", "mask", lambda v: jr.l2(TREE, mask={"dense": {"kernel": v, "bias": False}}), _vec(True)),
    Case("elastic_net", "alpha", lambda v: jr.elastic_net(TREE, alpha=v), _vec(0.1)),
    Case("elastic_net", "l1_ratio", lambda v: jr.elastic_net(TREE, l1_ratio=v), _vec(0.5)),
    Case("group_lasso", "axis", lambda v: jr.group_lasso(TREE, axis=v), _vec(0)),
    Case("orthogonal", "factor", lambda v: jr.orthogonal(TREE, factor=v), _vec(0.1)),
    Case("orthogonal", "mode", lambda v: jr.orthogonal(TREE, mode=v), np.array(["rows", "columns"])),
    Case("activity_l1", "batch_mean", lambda v: jr.activity_l1(X, batch_mean=v), _vec(True)),
    Case("activity_l2", "batch_mean", lambda v: jr.activity_l2(X, batch_mean=v), _vec(True)),
    # noise
    Case("dropout", "rate", lambda v: jr.dropout(KEY, X, v), _vec(0.1)),
    Case("dropout", "deterministic", lambda v: jr.dropout(KEY, X, 0.1, deterministic=v), _vec(True)),
    Case("spatial_dropout", "rate", lambda v: jr.spatial_dropout(KEY, IMAGES, v), _vec(0.1)),
    Case("spatial_dropout", "channel_axis", lambda v: jr.spatial_dropout(KEY, IMAGES, 0.1, channel_axis=v),
         _vec(1)),
    Case("gaussian_dropout", "rate", lambda v: jr.gaussian_dropout(KEY, X, v), _vec(0.1)),
    Case("alpha_dropout", "rate", lambda v: jr.alpha_dropout(KEY, X, v), _vec(0.1)),
    Case("gaussian_noise", "stddev", lambda v: jr.gaussian_noise(KEY, X, v), _vec(0.1)),
    Case("drop_path", "rate", lambda v: jr.drop_path(KEY, X, v), _vec(0.1)),
    Case("drop_connect", "rate", lambda v: jr.drop_connect(KEY, X, v), _vec(0.1)),
    Case("drop_block", "rate", lambda v: jr.drop_block(KEY, IMAGES, v, block_size=3), _vec(0.1)),
    Case("drop_block", "block_size", lambda v: jr.drop_block(KEY, IMAGES, 0.1, block_size=v), _vec(3)),
    # normalization
    Case("batch_norm_init", "num_features", lambda v: jr.batch_norm_init(v), _vec(6)),
    Case("batch_norm", "momentum", lambda v: jr.batch_norm(X, BN_PARAMS, BN_STATE, training=True, momentum=v),
         _vec(0.9)),
    Case("batch_norm", "epsilon", lambda v: jr.batch_norm(X, BN_PARAMS, BN_STATE, training=True, epsilon=v),
         _vec(1e-5)),
    Case("batch_renorm", "r_max", lambda v: jr.batch_renorm(X, BN_PARAMS, BN_STATE, training=True, r_max=v),
         _vec(3.0)),
    Case("batch_renorm", "d_max", lambda v: jr.batch_renorm(X, BN_PARAMS, BN_STATE, training=True, d_max=v),
         _vec(5.0)),
    # augmentation
    Case("flip", "horizontal", lambda v: jr.flip(IMAGES, horizontal=v), _vec(True)),
    Case("rotate", "degrees", lambda v: jr.rotate(IMAGES, v), _vec(10.0)),
    Case("zoom", "factor", lambda v: jr.zoom(IMAGES, v), _vec(1.2)),
    Case("translate", "shift", lambda v: jr.translate(IMAGES, v if np.ndim(v) else (1.0, v)), _vec(1.0)),
    Case("random_flip", "prob", lambda v: jr.random_flip(KEY, IMAGES, prob=v), _vec(0.5)),
    Case("random_flip", "vertical", lambda v: jr.random_flip(KEY, IMAGES, vertical=v), _vec(True)),
    Case("random_crop", "padding", lambda v: jr.random_crop(KEY, IMAGES, padding=v), _vec(1)),
    Case("random_crop", "size", lambda v: jr.random_crop(KEY, IMAGES, size=v), _vec(3)),
    Case("random_rotation", "max_degrees", lambda v: jr.random_rotation(KEY, IMAGES, v), _vec(10.0)),
    Case("random_zoom", "zoom_range", lambda v: jr.random_zoom(KEY, IMAGES, v), _vec(0.1)),
    Case("random_translation", "max_fraction", lambda v: jr.random_translation(KEY, IMAGES, v), _vec(0.1)),
    Case("mixup", "alpha", lambda v: jr.mixup(KEY, IMAGES, LABELS, v), _vec(0.2)),
    Case("mixup", "per_example_lambda", lambda v: jr.mixup(KEY, IMAGES, LABELS, 0.2, per_example_lambda=v),
         _vec(True)),
    Case("cutmix", "alpha", lambda v: jr.cutmix(KEY, IMAGES, LABELS, v), _vec(1.0)),
    Case("shear_x", "factor", lambda v: jr.shear_x(IMAGES, v), _vec(0.1)),
    Case("shear_y", "factor", lambda v: jr.shear_y(IMAGES, v), _vec(0.1)),
    Case("solarize", "threshold", lambda v: jr.solarize(IMAGES, v), _vec(0.5)),
    Case("posterize", "bits", lambda v: jr.posterize(IMAGES, v), jnp.full((3,), 4)),
    Case("adjust_brightness", "factor", lambda v: jr.adjust_brightness(IMAGES, v), _vec(1.2)),
    Case("adjust_contrast", "factor", lambda v: jr.adjust_contrast(IMAGES, v), _vec(1.2)),
    Case("adjust_saturation", "factor", lambda v: jr.adjust_saturation(IMAGES, v), _vec(1.2)),
    Case("adjust_sharpness", "factor", lambda v: jr.adjust_sharpness(IMAGES, v), _vec(1.2)),
    Case("random_erasing", "probability", lambda v: jr.random_erasing(KEY, IMAGES, probability=v), _vec(0.5)),
    Case("random_erasing", "scale", lambda v: jr.random_erasing(KEY, IMAGES, scale=v if np.ndim(v) else (0.1, v)),
         _vec(0.1)),
    Case("random_erasing", "value", lambda v: jr.random_erasing(KEY, IMAGES, value=v), jnp.zeros((2, 3))),
    Case("rand_augment", "magnitude", lambda v: jr.rand_augment(KEY, IMAGES, magnitude=v), _vec(9)),
    Case("rand_augment", "num_ops", lambda v: jr.rand_augment(KEY, IMAGES, num_ops=v), _vec(2)),
    Case("trivial_augment", "num_magnitude_bins", lambda v: jr.trivial_augment(KEY, IMAGES, num_magnitude_bins=v),
         _vec(31)),
    Case("augmix", "severity", lambda v: jr.augmix(KEY, IMAGES, severity=v), _vec(3)),
    Case("augmix", "width", lambda v: jr.augmix(KEY, IMAGES, width=v), _vec(3)),
    Case("augmix", "depth", lambda v: jr.augmix(KEY, IMAGES, depth=v), _vec(-1)),
    Case("augmix", "alpha", lambda v: jr.augmix(KEY, IMAGES, alpha=v), _vec(1.0)),
    Case("augmix", "all_ops", lambda v: jr.augmix(KEY, IMAGES, all_ops=v), _vec(True)),
    # optax transforms
    Case("add_penalty", "strength", lambda v: jr.add_penalty(jr.l2, v), _vec(0.1)),
    Case("proximal_l1", "strength", lambda v: jr.proximal_l1(v, learning_rate=0.1), _vec(0.1)),
    Case("proximal_l1", "learning_rate", lambda v: jr.proximal_l1(0.1, learning_rate=v), _vec(0.1)),
    Case("proximal_elastic_net", "l1_ratio", lambda v: jr.proximal_elastic_net(0.1, l1_ratio=v, learning_rate=0.1),
         _vec(0.5)),
    Case("proximal_group_lasso", "strength", lambda v: jr.proximal_group_lasso(v, learning_rate=0.1), _vec(0.1)),
    Case("max_norm", "max_value", lambda v: jr.max_norm(v), _vec(1.0)),
    Case("unit_norm", "axis", lambda v: jr.unit_norm(axis=v), _vec(0)),
    Case("non_negative", "mask", lambda v: jr.non_negative(mask={"w": v}).init({"w": jnp.ones(3)}), _vec(True)),
    Case("weight_decay", "rate", lambda v: jr.weight_decay(v), _vec(1e-4)),
    # early stopping, metrics
    Case("EarlyStopping", "patience", lambda v: jr.EarlyStopping(v), _vec(2)),
    Case("EarlyStopping", "min_delta", lambda v: jr.EarlyStopping(2, min_delta=v), _vec(0.1)),
    Case("EarlyStopping", "mode", lambda v: jr.EarlyStopping(2, mode=v), np.array(["min", "max"])),
    Case("EarlyStopping", "baseline", lambda v: jr.EarlyStopping(2, baseline=v), _vec(1.0)),
    Case("accuracy", "weights", lambda v: jr.accuracy(jnp.ones((2, 3)), jnp.zeros(2, jnp.int32), weights=v),
         _vec(1.0), nan=None),
    Case("generalization_gap", "val_metric", lambda v: jr.generalization_gap(jnp.ones(2), v), _vec(0.5), nan=None),
    Case("generalization_gap", "higher_is_better", lambda v: jr.generalization_gap(0.9, 0.8, higher_is_better=v),
         _vec(True)),
    Case("overfitting_score", "val_loss", lambda v: jr.overfitting_score(jnp.ones(2), v), _vec(0.5), nan=None),
    Case("weight_norms", "mask", lambda v: jr.weight_norms(TREE, mask=v), _vec(True)),
    Case("sparsity", "mask", lambda v: jr.sparsity(TREE, mask=v), _vec(True)),
    Case("mc_predict", "num_samples", lambda v: jr.mc_predict(lambda p, x, k: x, {}, X, KEY, v), _vec(2)),
    # the engine and the loop
    Case("create_train_state", "early_stopping",
         lambda v: jr.create_train_state({"w": jnp.zeros(2)}, TX, KEY, early_stopping=v), _vec(2)),
    Case("make_train_step", "coefficient",
         lambda v: jr.make_train_step(_apply, _loss, TX, penalties=[(jr.l2, v)], jit=False), _vec(1e-4)),
    Case("make_train_step", "jit", lambda v: jr.make_train_step(_apply, _loss, TX, jit=v), _vec(True)),
    Case("make_eval_step", "jit", lambda v: jr.make_eval_step(_apply, _loss, jit=v), _vec(True)),
    # convolution (issue 16)
    Case("conv", "feature_group_count", lambda v: jr.conv(IMAGES, jnp.ones((3, 3, 3, 3)), feature_group_count=v),
         _vec(1)),
    # the engine's output, input-gradient and averaging options (issue 11)
    Case("confidence_penalty", "axis", lambda v: jr.confidence_penalty(LABELS, axis=v), _vec(0)),
    Case("rdrop_loss", "axis", lambda v: jr.rdrop_loss(LABELS, LABELS, axis=v), _vec(0)),
    Case("jensen_shannon", "axis", lambda v: jr.jensen_shannon(LABELS, LABELS, axis=v), _vec(0)),
    Case("jsd_loss", "axis", lambda v: jr.jsd_loss(LABELS, LABELS, LABELS, axis=v), _vec(0)),
    Case("augmix_views", "num_views", lambda v: jr.augmix_views(v), _vec(2)),
    Case("make_train_step", "consistency coefficient",
         lambda v: jr.make_train_step(_apply, _loss, TX, consistency=(lambda k, x: (x,), v), jit=False), _vec(1.0)),
    Case("jacobian_penalty", "num_projections",
         lambda v: jr.jacobian_penalty(KEY, lambda x: x, X, num_projections=v), _vec(2)),
    Case("make_train_step", "output_penalties[0] coefficient",
         lambda v: jr.make_train_step(_apply, _loss, TX, output_penalties=[(_loss, v)], jit=False), _vec(0.1)),
    Case("make_train_step", "rdrop", lambda v: jr.make_train_step(_apply, _loss, TX, rdrop=v, jit=False), _vec(1.0)),
    Case("make_train_step", "input_gradient",
         lambda v: jr.make_train_step(_apply, _loss, TX, input_gradient=v, jit=False), _vec(0.1)),
    Case("make_train_step", "jacobian", lambda v: jr.make_train_step(_apply, _loss, TX, jacobian=v, jit=False),
         _vec(0.1)),
    Case("make_train_step", "jacobian_projections",
         lambda v: jr.make_train_step(_apply, _loss, TX, jacobian=0.1, jacobian_projections=v, jit=False), _vec(1)),
    Case("create_train_state", "ema_decay", lambda v: jr.create_train_state({"w": jnp.zeros(2)}, TX, KEY, ema_decay=v),
         _vec(0.9)),
    Case("create_train_state", "swa_start", lambda v: jr.create_train_state({"w": jnp.zeros(2)}, TX, KEY, swa_start=v),
         _vec(2)),
    Case("make_eval_step", "average", lambda v: jr.make_eval_step(_apply, _loss, average=v),
         np.array(["ema", "swa"])),
    Case("update_bn", "batch_size", lambda v: jr.update_bn(_apply, _state(), X, batch_size=v, average=None),
         _vec(1)),
    Case("make_train_epoch", "batch_size", lambda v: jr.make_train_epoch(STEP, batch_size=v), _vec(2)),
    Case("shuffle_key", "epoch", lambda v: jr.shuffle_key(KEY, v), _vec(1)),
    Case("fit", "epochs", lambda v: jr.fit(_state(), STEP, DATA, epochs=v, batch_size=2, progress=False), _vec(1)),
    Case("fit_members", "batch_size",
         lambda v: jr.fit_members(jr.stack_members([_state()]), STEP, DATA, epochs=1, batch_size=v), _vec(2)),
    Case("kfold_indices", "k", lambda v: jr.kfold_indices(6, v), _vec(2)),
    Case("kfold_masks", "num_examples", lambda v: jr.kfold_masks(v, 2), _vec(6)),
    Case("kfold_fit", "k",
         lambda v: jr.kfold_fit(_state(), STEP, DATA, k=v, epochs=1, batch_size=1, eval_step=EVAL), _vec(2)),
    Case("sweep_fit", "hparams",
         lambda v: jr.sweep_fit(_state(), lambda h: STEP, DATA, hparams=v if isinstance(v, dict) else {"c": v},
                                epochs=1, batch_size=1),
         {"c": jnp.zeros(2), "d": jnp.zeros(3)}),  # members disagree: 2 and 3
]

# Where NaN is a legitimate value (measured data, not a hyperparameter), only the wrong shape is walked.
NAN_IS_DATA = {
    "accuracy": "weights are per-example data; a NaN weight gives a NaN accuracy, as numpy would",
    "generalization_gap": "the metrics are measurements: a diverged run's NaN loss must give a NaN gap",
    "overfitting_score": "the losses are measurements: a NaN loss gives a NaN score, as IEEE division does",
}

# Public names that take no hyperparameter to walk, and why.
EXCLUDED = {
    "kernel_mask": "takes only the params pytree; masks themselves are walked through l1, l2, weight_norms...",
    "smooth_labels": "optax.smooth_labels re-exported unchanged (checked below): optax's validation, not ours",
    "BatchNormState": "a state record (mean, var) built by batch_norm_init, no hyperparameter",
    "to_flax_batch_stats": "a layout conversion of a BatchNormState, no hyperparameter",
    "from_flax_batch_stats": "a layout conversion of flax batch_stats, no hyperparameter",
    "AddPenaltyState": "an optimizer-state record (count), built by add_penalty's init",
    "ProximalState": "an optimizer-state record (count), built by the proximal transforms' init",
    "EarlyStoppingState": "a state record built by EarlyStopping.init",
    "Penalty": "a record (fn, coefficient, mask), validated where it is used: make_train_step's coefficient case",
    "TrainState": "the state record built by create_train_state",
    "linen_apply": "flax adapter in jaxreg/flax (module and argument names, no numeric hyperparameter); "
                   "tests/test_flax_linen.py covers its arguments",
    "nnx_apply": "flax adapter in jaxreg/flax: takes only an nnx module",
    "stack_members": "takes only a sequence of pytrees",
    "unstack_members": "takes only a stacked pytree",
    "has_plateau": "takes only an optimizer state",
    "invert": "takes only the images (their dtype and layout are checked in tests/test_augment_color.py)",
    "equalize": "takes only the images (their dtype and layout are checked in tests/test_augment_color.py)",
    "autocontrast": "takes only the images (their dtype and layout are checked in tests/test_augment_color.py)",
    "input_gradient_penalty": "takes only a loss function and the input batch (data): no hyperparameter",
    "WeightAverages": "a state record built by create_train_state(ema_decay=..., swa_start=...)",
}

def _params(kind: str) -> list:
    out = []
    for case in CASES:
        if kind == "nan" and case.nan is None:
            continue
        out.append(pytest.param(case, id=f"{case.fn}-{case.arg}"))
    return out


def _assert_refused_by_jaxreg(case: Case, value: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        case.call(value)
    message = str(info.value)
    assert case.arg in message, f"{case.fn}: the message does not name {case.arg!r}: {message}"
    raising = pathlib.Path(info.traceback[-1].path)
    assert raising.is_relative_to(PACKAGE), f"{case.fn}: raised outside jaxreg, in {raising}: {message}"


@pytest.mark.parametrize("case", _params("wrong_shape"))
def test_wrong_shape_hyperparameter_is_refused_naming_it(case: Case):
    _assert_refused_by_jaxreg(case, case.wrong_shape)


@pytest.mark.parametrize("case", _params("nan"))
def test_nan_hyperparameter_is_refused_naming_it(case: Case):
    _assert_refused_by_jaxreg(case, case.nan)


def test_every_public_function_is_walked_or_excluded():
    """A new public function needs a case above, or an exclusion with its reason."""
    public = {name for name in jr.__all__ if callable(getattr(jr, name))}
    walked = {case.fn for case in CASES}
    assert not walked & EXCLUDED.keys(), "a name is both walked and excluded"
    missing = public - walked - EXCLUDED.keys()
    assert not missing, f"public functions without a bad-input case or a justified exclusion: {sorted(missing)}"
    stale = (walked | EXCLUDED.keys() | NAN_IS_DATA.keys()) - set(jr.__all__)
    assert not stale, f"cases or exclusions for names that are not public: {sorted(stale)}"
    assert all(reason.strip() for reason in (*EXCLUDED.values(), *NAN_IS_DATA.values()))
    assert {case.fn for case in CASES if case.nan is None} == NAN_IS_DATA.keys()
    # Every function that is walked has a NaN case, except where NaN is data for every argument walked.
    with_nan = {case.fn for case in CASES if case.nan is not None}
    assert walked - with_nan <= NAN_IS_DATA.keys()


def test_excluded_reexport_is_optax():
    assert jr.smooth_labels is optax.smooth_labels
