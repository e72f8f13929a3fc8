"""Tests for jaxreg/train.py (the step) and jaxreg/loop.py (make_train_epoch, fit).

References: a hand-written flax.linen + optax training step (same key handling: fold_in(key, step), flax's
own dropout masks); numpy formulas for penalties, weighted losses, SGD updates and weight norms; a Python
loop of single steps over the documented permutation for the scanned epoch; optax's ``reduce_on_plateau``
state for the plateau value. Shapes are tiny and the compiled functions are shared
through module-level objects to keep the number of XLA compilations small.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import ReduceLROnPlateauState

import jaxreg as jr

N, D, C, B = 43, 4, 3, 16  # examples, features, classes, batch size: 2 batches per epoch, 11 dropped
L2_COEF, L1_COEF = 1e-3, 1e-4


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(8, use_bias=False)(x)  # a bias before batch norm has a zero gradient: adam would chase noise
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.5, deterministic=not train)(x)
        return nn.Dense(C)(x)


MODEL = MLP()
_RNG = np.random.RandomState(0)  # numpy data: no XLA compilations for random draws
X = jnp.asarray(_RNG.normal(size=(N, D)), jnp.float32)
Y = jnp.asarray(np.argmax(np.asarray(X)[:, :C] + 0.3 * _RNG.normal(size=(N, C)), axis=-1), jnp.int32)
X_VAL = jnp.asarray(_RNG.normal(size=(N, D)), jnp.float32)
Y_VAL = jnp.asarray(np.argmax(np.asarray(X_VAL)[:, :C], axis=-1), jnp.int32)
VARIABLES = jax.jit(MODEL.init, static_argnames="train")(jax.random.key(0), X[:B], train=False)
TX = optax.adam(1e-2)
LOSS = optax.softmax_cross_entropy_with_integer_labels
# L1 on kernels only (a prefix mask): biases start at 0, where |w| has no unique subgradient.
L1_MASK = {"Dense_0": True, "Dense_1": {"kernel": True, "bias": False}, "BatchNorm_0": False}
PENALTIES = [(jr.l2, L2_COEF, jr.kernel_mask), (jr.l1, L1_COEF, L1_MASK)]
APPLY = jr.linen_apply(MODEL)
STEP = jr.make_train_step(APPLY, LOSS, TX, penalties=PENALTIES)
STEP_RAW = jr.make_train_step(APPLY, LOSS, TX, penalties=PENALTIES, jit=False)
EVAL = jr.make_eval_step(APPLY, LOSS)
SHUFFLE_STREAM = np.uint32(2**32 - 1)  # documented: shuffle root = fold_in(key, 2**32 - 1)


# mode="max" on a loss: epoch 0 is the best, epoch 1 does not improve, patience 1 -> stop after epoch 1.
STOPPER = jr.EarlyStopping(patience=1, mode="max")


def _state(seed=0, **kwargs):
    return jr.create_train_state(
        VARIABLES["params"], TX, jax.random.key(seed), model_state={"batch_stats": VARIABLES["batch_stats"]},
        **kwargs,
    )


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _assert_trees(a, b, exact=False, rtol=1e-5, atol=1e-6):
    la, lb = jax.tree.leaves(_host(a)), jax.tree.leaves(_host(b))
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        if exact:
            np.testing.assert_array_equal(u, v)
        else:
            np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


def _numpy_penalty(params):
    """Reference: L2_COEF * sum of squared kernels + L1_COEF * sum |kernels|, in float64 numpy."""
    kernels = [np.float64(params["Dense_0"]["kernel"]), np.float64(params["Dense_1"]["kernel"])]
    return L2_COEF * sum(np.sum(k**2) for k in kernels) + L1_COEF * sum(np.sum(np.abs(k)) for k in kernels)


@jax.jit
def _reference_step(params, batch_stats, opt_state, key, step, x, y):
    """Hand-written flax + optax step: dropout rng fold_in(key, step), mean CE + manual penalties."""
    rng = jax.random.fold_in(key, step)

    def objective(p):
        logits, updates = MODEL.apply(
            {"params": p, "batch_stats": batch_stats}, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )
        task = jnp.mean(LOSS(logits, y))
        kernels = [p["Dense_0"]["kernel"], p["Dense_1"]["kernel"]]
        penalty = L2_COEF * sum(jnp.sum(k**2) for k in kernels)
        penalty = penalty + L1_COEF * sum(jnp.sum(jnp.abs(k)) for k in kernels)
        return task + penalty, (task, penalty, updates["batch_stats"])

    (_, (task, penalty, new_bs)), grads = jax.value_and_grad(objective, has_aux=True)(params)
    with jax.numpy_dtype_promotion("standard"):  # optax.adam is not strict-promotion clean
        updates, opt_state = TX.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_bs, opt_state, task, penalty


# ---------------------------------------------------------------------------------------------------------
# The step
# ---------------------------------------------------------------------------------------------------------


def test_step_matches_handwritten_flax_optax_step():
    """Two jitted steps equal the hand-written flax/optax step; the penalty metric equals the numpy sum."""
    state = _state()
    params, bs = VARIABLES["params"], VARIABLES["batch_stats"]
    opt_state, key = TX.init(params), jax.random.key(0)
    for k in range(2):
        x, y = X[k * B : (k + 1) * B], Y[k * B : (k + 1) * B]
        expected_penalty = _numpy_penalty(state.params)
        state, metrics = STEP(state, x, y)
        params, bs, opt_state, task, penalty = _reference_step(params, bs, opt_state, key, k, x, y)
        _assert_trees(state.params, params)
        _assert_trees(state.model_state["batch_stats"], bs)
        _assert_trees(state.opt_state, opt_state)
        np.testing.assert_allclose(metrics["loss"], task, rtol=1e-5)
        np.testing.assert_allclose(metrics["penalty"], penalty, rtol=1e-5)
        np.testing.assert_allclose(metrics["penalty"], expected_penalty, rtol=1e-5)
        assert 0.0 <= float(metrics["accuracy"]) <= 1.0 and int(metrics["skipped"]) == 0
    assert int(state.step) == 2 and int(state.skipped) == 0


def test_step_noise_depends_only_on_key_and_step_number():
    """A fresh state jumped to step 7 makes exactly the reference step with dropout rng fold_in(key, 7).

    The reference draws its flax dropout masks from (key, 7) alone, with no history; the same params and
    batch at step 8 draw other masks and give other params.
    """
    x, y = X[:B], Y[:B]
    params, bs = VARIABLES["params"], VARIABLES["batch_stats"]
    jumped, _ = STEP(_state().replace(step=jnp.int32(7)), x, y)
    ref_params, ref_bs, _, _, _ = _reference_step(params, bs, TX.init(params), jax.random.key(0), 7, x, y)
    _assert_trees(jumped.params, ref_params)
    _assert_trees(jumped.model_state["batch_stats"], ref_bs)
    later, _ = STEP(_state().replace(step=jnp.int32(8)), x, y)
    assert not np.allclose(_host(later.params["Dense_1"]["kernel"]), _host(jumped.params["Dense_1"]["kernel"]))


def test_nonfinite_loss_skips_update_and_counts_it():
    """A NaN input gives a NaN loss: params, optimizer and batch stats unchanged, skipped counted."""
    state, _ = STEP(_state(), X[:B], Y[:B])
    before = _host({"params": state.params, "opt_state": state.opt_state, "model_state": state.model_state})
    x_bad = X[B : 2 * B].at[3, 0].set(jnp.nan)
    state, metrics = STEP(state, x_bad, Y[B : 2 * B])
    assert int(metrics["skipped"]) == 1 and not np.isfinite(float(metrics["loss"]))
    assert int(state.skipped) == 1 and int(state.step) == 2
    _assert_trees(state.params, before['params'], exact=True)
    _assert_trees(state.opt_state, before['opt_state'], exact=True)
    _assert_trees(state.model_state, before['model_state'], exact=True)
    state, metrics = STEP(state, X[B : 2 * B], Y[B : 2 * B])
    assert int(metrics["skipped"]) == 0 and int(state.skipped) == 1
    assert not np.array_equal(np.asarray(state.params["Dense_0"]["kernel"]), before['params']["Dense_0"]["kernel"])


def _linear_apply(params, model_state, x, *, key, training):
    return x @ params["w"], model_state


def test_nonfinite_gradient_with_finite_loss_is_skipped():
    """loss = sqrt|pred - y| at pred == y is 0 but its gradient is not finite: the update is skipped."""
    tx = optax.sgd(0.1)
    step = jr.make_train_step(_linear_apply, lambda p, t: jnp.sqrt(jnp.abs(p - t)), tx)
    state = jr.create_train_state({"w": jnp.ones(2)}, tx, jax.random.key(0))
    x = jnp.array([[1.0, 2.0]])
    state, metrics = step(state, x, jnp.array([3.0]))
    assert float(metrics["loss"]) == 0.0 and not np.isfinite(float(metrics["grad_norm"]))
    assert int(metrics["skipped"]) == 1 and int(state.skipped) == 1
    np.testing.assert_array_equal(np.asarray(state.params["w"]), [1.0, 1.0])


def test_weights_exclude_examples():
    """Weights (1, 1, 0, 0): the same step as on the first two examples only; loss = sum(w l) / sum(w)."""
    tx = optax.sgd(0.1)
    step = jr.make_train_step(_linear_apply, lambda p, t: (p - t) ** 2, tx)
    x = jnp.array([[1.0, 0.0], [0.5, 1.0], [3.0, 3.0], [-2.0, 1.0]])
    y = jnp.array([1.0, -1.0, 1e6, -1e6])  # excluded examples have absurd targets
    w = jnp.array([1.0, 1.0, 0.0, 0.0])
    weighted, m_w = step(jr.create_train_state({"w": jnp.zeros(2)}, tx, jax.random.key(0)), x, y, w)
    subset, m_s = step(jr.create_train_state({"w": jnp.zeros(2)}, tx, jax.random.key(0)), x[:2], y[:2])
    np.testing.assert_allclose(weighted.params["w"], subset.params["w"], rtol=1e-6)
    np.testing.assert_allclose(m_w["loss"], m_s["loss"], rtol=1e-6)
    np.testing.assert_allclose(m_w["loss"], (1.0 + 1.0) / 2.0, rtol=1e-6)  # numpy: preds are 0
    # Fractional weights: sum(w * l) / max(sum(w), 1) with numpy.
    wf = np.array([0.2, 0.3, 0.0, 0.1], np.float32)
    rows = jnp.array([0, 1, 0, 1])
    _, m = step(jr.create_train_state({"w": jnp.zeros(2)}, tx, jax.random.key(0)), x[rows], y[rows], jnp.asarray(wf))
    np.testing.assert_allclose(m["loss"], np.sum(wf * np.array([1.0, 1.0, 1.0, 1.0])) / 1.0, rtol=1e-6)
    # A (penalty_fn, coefficient) pair applies to every leaf: 0.5 * (1 + 4) by hand.
    pair = jr.make_train_step(_linear_apply, lambda p, t: (p - t) ** 2, tx, penalties=[(jr.l2, 0.5)])
    _, m = pair(jr.create_train_state({"w": jnp.array([1.0, 2.0])}, tx, jax.random.key(0)), x, y, w)
    np.testing.assert_allclose(m["penalty"], 2.5, rtol=1e-6)
    evaluate = jr.make_eval_step(_linear_apply, lambda p, t: (p - t) ** 2)
    sq = (np.asarray(x[:2]) @ np.asarray(subset.params["w"]) - np.asarray(y[:2])) ** 2  # numpy reference
    np.testing.assert_allclose(evaluate(subset, x, y, w)["loss"], sq.mean(), rtol=1e-6)


def test_raw_step_vmaps_over_states_weights_and_traced_coefficients():
    """cv.py's use: vmap the jit=False step over stacked states, fold weights and a traced L2 coefficient.

    Reference: one SGD step on the weighted MSE + c * ||p||^2 by the numpy gradient formula
    p - lr * (2 X^T (w * (X p - y)) / max(sum w, 1) + 2 c p).
    """
    lr = 0.1
    tx = optax.sgd(lr)
    x = np.array([[1.0, 0.0], [0.5, 1.0], [3.0, 3.0], [-2.0, 1.0]], np.float32)
    y = np.array([1.0, -1.0, 2.0, 0.5], np.float32)
    p0 = np.array([1.0, -1.0], np.float32)
    coefs = np.array([0.0, 0.3, 1.0], np.float32)
    folds = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 1, 1, 1]], np.float32)

    def member(c, state, w):
        step = jr.make_train_step(_linear_apply, lambda p, t: (p - t) ** 2, tx, penalties=[(jr.l2, c, None)], jit=False)
        return step(state, jnp.asarray(x), jnp.asarray(y), w)

    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: jr.create_train_state({"w": jnp.asarray(p0)}, tx, k))(keys)
    states, metrics = jax.jit(jax.vmap(member))(jnp.asarray(coefs), states, jnp.asarray(folds))
    for i, (c, w) in enumerate(zip(coefs, folds)):
        grad = 2 * x.T @ (w * (x @ p0 - y)) / max(w.sum(), 1.0) + 2 * c * p0
        np.testing.assert_allclose(states.params["w"][i], p0 - lr * grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics["penalty"][i], c * np.sum(p0**2), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(states.step), [1, 1, 1])


def test_eval_step_matches_module_apply_in_eval_mode():
    """Evaluation = flax apply with train=False (running stats, no dropout); accuracy = numpy argmax match."""
    state = _state()
    metrics = EVAL(state, X_VAL, Y_VAL)
    logits = jax.jit(lambda v, x: MODEL.apply(v, x, train=False))(VARIABLES, X_VAL)
    np.testing.assert_allclose(metrics["loss"], np.mean(LOSS(logits, Y_VAL)), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(logits, -1) == np.asarray(Y_VAL)))


# ---------------------------------------------------------------------------------------------------------
# The epoch
# ---------------------------------------------------------------------------------------------------------

EPOCH = jr.make_train_epoch(STEP, batch_size=B)  # the same (cached) function fit() uses


def test_scan_epoch_equals_python_loop_and_is_deterministic():
    """The scanned epoch = a loop of jitted steps over the documented permutation; same key -> same bits."""
    n = N  # 43 examples: 2 batches of 16, the last 11 of the permutation dropped
    x, y = X, Y
    # States carry an early-stopping state, as in fit(), so that all epoch calls share one compilation.
    state, metrics = EPOCH(_state(early_stopping=STOPPER), x, y, jnp.int32(1))
    assert int(state.step) == 2

    looped = _state()
    shuffle_root = jax.random.fold_in(looped.key, SHUFFLE_STREAM)
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_root, 1), n))
    losses = []
    for b in range(n // B):
        idx = perm[b * B : (b + 1) * B]
        looped, m = STEP(looped, x[idx], y[idx])
        losses.append(float(m["loss"]))
    _assert_trees(state.params, looped.params)
    _assert_trees(state.model_state, looped.model_state)
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), rtol=1e-5)
    assert int(metrics["skipped"]) == 0

    again, _ = EPOCH(_state(early_stopping=STOPPER), x, y, jnp.int32(1))
    _assert_trees(again.params, state.params, exact=True)
    other_key, _ = EPOCH(_state(seed=1, early_stopping=STOPPER), x, y, jnp.int32(1))
    other_epoch, _ = EPOCH(_state(early_stopping=STOPPER), x, y, jnp.int32(2))
    for other in (other_key, other_epoch):
        assert not np.array_equal(_host(other.params["Dense_0"]["kernel"]), _host(state.params["Dense_0"]["kernel"]))


def test_vmapped_epoch_over_folds_equals_one_epoch_per_fold():
    """The documented k-fold recipe: vmap(make_train_epoch(jit=False)) over stacked states and fold weights."""
    tx = optax.sgd(0.05)
    step = jr.make_train_step(_linear_apply, lambda p, t: jnp.sum((p - t) ** 2, axis=-1), tx, jit=False)
    epoch = jr.make_train_epoch(step, batch_size=8, jit=False)
    x = jnp.asarray(np.asarray(X)[:20])
    y = x @ jnp.ones((D, 2))
    folds = jnp.asarray(np.arange(20)[None, :] % 3 != np.arange(3)[:, None], jnp.float32)  # 3 folds
    keys = jax.random.split(jax.random.key(5), 3)
    states = jax.vmap(lambda k: jr.create_train_state({"w": jnp.zeros((D, 2))}, tx, k))(keys)
    run = jax.jit(jax.vmap(epoch, in_axes=(0, None, None, None, 0)))
    stacked, metrics = run(states, x, y, jnp.int32(0), folds)
    single = jax.jit(epoch)
    for i in range(3):
        state_i, metrics_i = single(jr.create_train_state({"w": jnp.zeros((D, 2))}, tx, keys[i]), x, y, 0, folds[i])
        np.testing.assert_allclose(stacked.params["w"][i], state_i.params["w"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(metrics["loss"][i], metrics_i["loss"], rtol=1e-5)
    assert not np.allclose(_host(stacked.params["w"][0]), _host(stacked.params["w"][1]))


def test_epoch_means_exclude_skipped_steps():
    """With one NaN batch, the epoch loss is the mean over the finite steps and skipped = 1."""
    state = _state(early_stopping=STOPPER)
    first = int(jax.random.permutation(jax.random.fold_in(jax.random.fold_in(state.key, SHUFFLE_STREAM), 0), N)[0])
    x = X.at[first, 0].set(jnp.nan)  # an example of the first batch (the last 11 are dropped)
    state, metrics = EPOCH(state, x, Y, jnp.int32(0))
    assert int(metrics["skipped"]) == 1 and int(state.skipped) == 1
    assert np.isfinite(float(metrics["loss"]))


# ---------------------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------------------


def _run_fit(seed):
    snapshots = []

    def on_epoch_end(epoch, state, history):
        assert history["epoch"][-1] == epoch
        snapshots.append(_host({"params": state.params, "model_state": state.model_state}))

    state, history = jr.fit(
        _state(seed), STEP, (X, Y), epochs=5, batch_size=B, val_data=(X_VAL, Y_VAL), eval_step=EVAL,
        early_stopping=STOPPER, eval_train=True, progress=False, on_epoch_end=on_epoch_end,
    )
    return state, history, snapshots


def test_fit_history_early_stopping_restore_and_determinism():
    state, history, snapshots = _run_fit(0)
    assert history["epoch"] == [0, 1] and len(snapshots) == 2
    assert bool(state.stopper.should_stop) and int(state.stopper.best_step) == 0
    # Restored: the params and batch stats of epoch 0, bit for bit.
    _assert_trees({"params": state.params, "model_state": state.model_state}, snapshots[0], exact=True)

    for name in ("train_loss", "train_accuracy", "train_penalty", "grad_norm", "skipped", "val_loss",
                 "val_accuracy", "train_eval_loss", "train_eval_accuracy", "generalization_gap",
                 "overfitting_score", "sparsity", "weight_l1/Dense_0/kernel", "weight_l2/Dense_1/kernel"):
        assert len(history[name]) == 2, name
    assert "weight_l1/Dense_1/bias" not in history  # default norms_mask = kernel_mask
    for e, snap in enumerate(snapshots):
        kernels = [snap["params"]["Dense_0"]["kernel"], snap["params"]["Dense_1"]["kernel"]]
        np.testing.assert_allclose(history["weight_l1/Dense_0/kernel"][e], np.abs(kernels[0]).sum(), rtol=1e-5)
        np.testing.assert_allclose(history["weight_l2/Dense_1/kernel"][e], np.linalg.norm(kernels[1]), rtol=1e-5)
        zeros = sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)
        assert history["sparsity"][e] == pytest.approx(zeros)
        gap = history["train_eval_accuracy"][e] - history["val_accuracy"][e]
        assert history["generalization_gap"][e] == pytest.approx(gap, abs=1e-6)
        score = history["val_loss"][e] / history["train_eval_loss"][e]
        assert history["overfitting_score"][e] == pytest.approx(score, rel=1e-6)
    # The last val loss is that of the epoch-1 params (evaluated independently here).
    last = _state().replace(params=jax.device_put(snapshots[1]["params"]),
                            model_state=jax.device_put(snapshots[1]["model_state"]))
    assert history["val_loss"][1] == pytest.approx(float(EVAL(last, X_VAL, Y_VAL)["loss"]), rel=1e-6)

    state2, history2, _ = _run_fit(0)
    assert history2 == history
    _assert_trees(state2.params, state.params, exact=True)
    _, history3, _ = _run_fit(1)
    assert history3["train_loss"] != history["train_loss"]

    # Resuming a run whose stopper already said stop (e.g. restored from a checkpoint) trains no further.
    kept = _host(state.params)
    state4, history4 = jr.fit(state, STEP, (X, Y), epochs=5, batch_size=B, val_data=(X_VAL, Y_VAL),
                              eval_step=EVAL, early_stopping=STOPPER, initial_epoch=2, progress=False)
    assert history4 == {}
    _assert_trees(state4.params, kept, exact=True)


def test_fit_feeds_val_loss_to_reduce_on_plateau():
    """lr_scale halves once the plateau stops improving; the plateau's best value is the val loss it was fed.

    With atol=1e3 only the first value fed (best = inf) counts as an improvement; with accumulation_size =
    steps per epoch optax evaluates once per epoch, on the mean of the values fed: the val loss after the
    previous epoch (before training for epoch 0), so its best_value must equal the initial val loss.
    """
    steps_per_epoch = N // B
    tx = optax.chain(
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.1),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=1, rtol=0.0, atol=1e3,
                                        accumulation_size=steps_per_epoch),
    )
    mse = lambda p, t: jnp.sum((p - t) ** 2, axis=-1)  # noqa: E731
    state = jr.create_train_state({"w": jnp.zeros((D, 2))}, tx, jax.random.key(0))
    y = X @ jnp.ones((D, 2))
    evaluate = jr.make_eval_step(_linear_apply, mse)
    initial_val = float(evaluate(state, X_VAL, X_VAL @ jnp.ones((D, 2)))["loss"])
    state, history = jr.fit(
        state, jr.make_train_step(_linear_apply, mse, tx), (X, y), epochs=3, batch_size=B,
        val_data=(X_VAL, X_VAL @ jnp.ones((D, 2))), eval_step=evaluate, progress=False,
    )
    assert history["lr_scale"] == [1.0, 0.5, 0.25]
    np.testing.assert_allclose(history["learning_rate"], [0.1, 0.05, 0.025], rtol=1e-6)
    (plateau,) = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda s: isinstance(s, ReduceLROnPlateauState))
                  if isinstance(s, ReduceLROnPlateauState)]
    np.testing.assert_allclose(plateau.best_value, initial_val, rtol=1e-5)
    assert history["val_loss"][-1] < initial_val


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="coefficient"):
        jr.make_train_step(APPLY, LOSS, TX, penalties=[(jr.l2, -1.0, None)])
    with pytest.raises(TypeError, match="penalties"):
        jr.make_train_step(APPLY, LOSS, TX, penalties=[jr.l2])
    with pytest.raises(TypeError, match="loss_fn"):
        jr.make_train_step(APPLY, None, TX)
    with pytest.raises(ValueError, match="batch_size"):
        jr.make_train_epoch(STEP_RAW, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        jr.make_train_epoch(STEP_RAW, batch_size=B, jit=False)(_state(), X[:4], Y[:4], 0)
    with pytest.raises(ValueError, match="key"):
        jr.create_train_state(VARIABLES["params"], TX, None)
    with pytest.raises(ValueError, match="eval_step"):
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, val_data=(X_VAL, Y_VAL))
    with pytest.raises(ValueError, match="monitor"):
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, early_stopping=jr.EarlyStopping(patience=1),
               monitor="val_loss")
    with pytest.raises(ValueError, match="monitor"):
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, monitor="loss")
    with pytest.raises(ValueError, match="epochs"):
        jr.fit(_state(), STEP, (X, Y), epochs=0, batch_size=B)


def test_batch_mismatch_between_outputs_and_labels_is_a_value_error_naming_the_shapes():
    """Issue 15: outputs and labels (or weights) whose batch sizes differ died in JAX broadcasting inside loss_fn
    (a TypeError from jax internals) or broadcast silently; now the step and the evaluation raise at trace
    time, naming both shapes. Legal label forms still pass: integer classes, one-hot/soft, regression targets."""
    params = {"w": jnp.zeros((D, C))}
    state = jr.create_train_state(params, optax.sgd(0.1), jax.random.key(0))
    ce = optax.softmax_cross_entropy_with_integer_labels
    step, evaluate = (jr.make_train_step(_linear_apply, ce, optax.sgd(0.1), jit=False),
                      jr.make_eval_step(_linear_apply, ce, jit=False))
    for run in (lambda y, w=None: step(state, X[:8], y, w), lambda y, w=None: evaluate(state, X[:8], y, w)):
        with pytest.raises(ValueError, match=r"outputs of shape \(8, 3\) and y of shape \(9,\)") as info:
            run(Y[:9])
        assert info.traceback[-1].path.name == "_losses.py"  # raised by jaxreg's check, not inside loss_fn
        with pytest.raises(ValueError, match=r"weights must have shape \(batch,\) = \(8,\).*\(9,\)"):
            run(Y[:8], jnp.ones(9))
        run(Y[:8], jnp.ones(8))  # integer labels of shape outputs.shape[:-1]
    one_hot = jax.nn.one_hot(Y[:8], C)
    soft_ce = optax.softmax_cross_entropy
    jr.make_train_step(_linear_apply, soft_ce, optax.sgd(0.1), jit=False)(state, X[:8], one_hot)  # one-hot
    mse = lambda p, t: (p - t) ** 2  # noqa: E731
    jr.make_eval_step(_linear_apply, mse, jit=False)(state, X[:8], one_hot)  # regression targets, same shape
    with pytest.raises(ValueError, match=r"outputs of shape \(8, 3\) and y of shape \(4, 3\)"):
        jr.make_eval_step(_linear_apply, mse, jit=False)(state, X[:8], one_hot[:4])


def test_fit_resolves_early_stopping_auto_mode_from_monitor():
    """EarlyStopping's default mode="auto" follows fit's monitor as Keras' does: max for val_accuracy, min for
    val_loss. Reference: the history itself, the stopper's best value is the max (resp. min) of the recorded
    values and its best step the first epoch that reached it (before, "auto" was refused, and the default
    "min" took the lowest accuracy as the best)."""
    for monitor, pick in (("val_accuracy", max), ("val_loss", min)):
        state, history = jr.fit(_state(), STEP, (X, Y), epochs=4, batch_size=B, val_data=(X_VAL, Y_VAL),
                                eval_step=EVAL, early_stopping=jr.EarlyStopping(patience=4, restore_best=False),
                                monitor=monitor, progress=False)
        values = history[monitor]
        assert max(values) != min(values)  # not vacuous: the two modes disagree on this history
        assert float(state.stopper.best_value) == pytest.approx(pick(values), rel=1e-6)
        assert int(state.stopper.best_step) == values.index(pick(values))


# ---------------------------------------------------------------------------------------------------------
# nnx models
# ---------------------------------------------------------------------------------------------------------


def test_nnx_apply_step_equals_native_nnx_training_step():
    """Reference: flax's own nnx training path (nnx.value_and_grad + nnx.Optimizer) on the same model,
    whose dropout stream is seeded with the engine's step key fold_in(key, 0)."""
    from flax import nnx

    from jaxreg.flax import nnx as jrn

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.bn = jrn.BatchNorm(8, rngs=rngs)
            self.drop = jrn.Dropout(0.5, rngs=rngs)
            self.out = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.out(self.drop(nnx.relu(self.bn(self.hidden(x)))))

    x = np.random.RandomState(0).randn(16, 4).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 3
    key = jax.random.key(7)
    ce = optax.softmax_cross_entropy_with_integer_labels

    apply_fn, params, model_state = jr.nnx_apply(Net(nnx.Rngs(0)))
    tx = optax.sgd(0.1)
    state = jr.create_train_state(params, tx, key, model_state=model_state)
    state, metrics = jr.make_train_step(apply_fn, ce, tx)(state, x, y)

    model = Net(nnx.Rngs(0))
    model.train()
    nnx.reseed(model, default=jax.random.fold_in(key, 0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    loss, grads = nnx.value_and_grad(lambda m: ce(m(x), y).mean())(model)
    optimizer.update(model, grads)

    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
    _assert_trees(state.params, nnx.state(model, nnx.Param))
    _assert_trees(state.model_state, nnx.state(model, nnx.BatchStat))
    # Evaluation mode is deterministic and uses the running statistics.
    eval_step = jr.make_eval_step(apply_fn, ce)
    assert float(eval_step(state, x, y)["loss"]) == float(eval_step(state, x, y)["loss"])
