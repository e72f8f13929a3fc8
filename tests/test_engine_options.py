"""The engine's regularizers beyond parameter penalties (issue 11): in-step augmentation, output penalties,
R-Drop, input-gradient and Jacobian penalties, EMA/SWA weight averaging, update_bn, and SAM.

Each is checked against an independent reference: the formula in numpy (confidence penalty, symmetric KL,
EMA, SWA as torch's ``AveragedModel`` computes it, ``update_bn`` as torch's ``swa_utils.update_bn``), the
same computation done by hand outside the step (augmentation keys, R-Drop's two passes), ``jax.jacfwd`` (the
input gradient and the Jacobian), and optax's own SAM loop (``optax.contrib.sam`` in opaque mode).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg.train import AUGMENT_STREAM, stream_key

D, H, C, B = 4, 6, 3, 8
X = jax.random.normal(jax.random.key(1), (B, D))
Y = jnp.arange(B) % C
CE = optax.softmax_cross_entropy_with_integer_labels


def _params(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"w1": jax.random.normal(k1, (D, H)) / 2, "w2": jax.random.normal(k2, (H, C)) / 2}


def _apply(params, model_state, x, *, key, training):
    h = jnp.tanh(x @ params["w1"])
    if training and key is not None:
        h = jr.dropout(key, h, 0.3)
    return h @ params["w2"], model_state


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def _assert_trees(a, b, **tol):
    for x, y in zip(_leaves(a), _leaves(b)):
        if tol:
            np.testing.assert_allclose(x, y, **tol)
        else:
            np.testing.assert_array_equal(x, y)


def _state(tx, **kw):
    return jr.create_train_state(_params(), tx, jax.random.key(7), **kw)


# ---------------------------------------------------------------------------------------------- references


def _np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_confidence_penalty_and_rdrop_loss_match_their_numpy_formulas():
    """Reference: numpy in float64. Pereyra et al.: mean(sum p log p); R-Drop: 0.5 (KL(a||b) + KL(b||a))."""
    rng = np.random.default_rng(0)
    for shape in ((5, 3), (2, 4, 7)):
        a, b = rng.normal(size=shape).astype(np.float32) * 3, rng.normal(size=shape).astype(np.float32)
        la, lb = _np_log_softmax(a), _np_log_softmax(b)
        expected_conf = np.mean(np.sum(np.exp(la) * la, -1))
        expected_kl = np.mean(0.5 * (np.sum(np.exp(la) * (la - lb), -1) + np.sum(np.exp(lb) * (lb - la), -1)))
        np.testing.assert_allclose(jr.confidence_penalty(a), expected_conf, rtol=1e-5)
        np.testing.assert_allclose(jr.rdrop_loss(a, b), expected_kl, rtol=1e-5)
    assert float(jr.rdrop_loss(a, a)) == 0.0
    with pytest.raises(ValueError, match="one shape"):
        jr.rdrop_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(TypeError, match="logits"):
        jr.confidence_penalty(jnp.zeros((2, 3), jnp.int32))


def test_input_gradient_and_jacobian_penalties_match_jacfwd():
    """Reference: per-example Jacobians by jax.jacfwd. Double backprop = mean_i ||d l_i/d x_i||^2 exactly; the
    projected Jacobian estimate is unbiased: its mean over 64 keys is within 5 standard errors of ||J||_F^2."""
    params = _params()

    def outputs(x):
        return _apply(params, {}, x, key=None, training=False)[0]

    def losses(x):
        return CE(outputs(x), Y)

    per_example_grad = jax.vmap(jax.grad(lambda xi, yi: CE(outputs(xi[None]), yi[None])[0]))(X, Y)
    expected = np.mean(np.sum(np.asarray(per_example_grad, np.float64) ** 2, axis=1))
    np.testing.assert_allclose(jr.input_gradient_penalty(losses, X), expected, rtol=1e-5)

    jac = jax.vmap(jax.jacfwd(lambda xi: outputs(xi[None])[0]))(X)  # (B, C, D)
    exact = float(np.mean(np.sum(np.asarray(jac, np.float64) ** 2, axis=(1, 2))))
    estimates = np.array([float(jr.jacobian_penalty(k, outputs, X)) for k in jax.random.split(jax.random.key(3), 64)])
    assert abs(estimates.mean() - exact) < 5 * estimates.std() / np.sqrt(64) + 1e-6
    many = float(jr.jacobian_penalty(jax.random.key(4), outputs, X, num_projections=2000))
    np.testing.assert_allclose(many, exact, rtol=0.05)


# ------------------------------------------------------------------------------------------- the engine


def test_augment_runs_in_the_step_on_its_own_key_stream():
    """Reference: the same augmentation applied by hand with stream_key(key, AUGMENT_STREAM, step), then a
    step without the hook. Same losses bit for bit (the hook's key is its own stream, the dropout key is
    unchanged); params to 1e-6 (two programs: XLA fuses the in-step augmentation differently)."""
    tx = optax.sgd(0.1)

    def augment(key, x, y):
        return x + 0.1 * jax.random.normal(key, x.shape), y

    hooked = jr.make_train_step(_apply, CE, tx, augment=augment)
    plain = jr.make_train_step(_apply, CE, tx)
    a, b = _state(tx), _state(tx)
    for _ in range(3):
        x_aug, _ = augment(stream_key(b.key, AUGMENT_STREAM, b.step), X, Y)
        a, ma = hooked(a, X, Y)
        b, mb = plain(b, x_aug, Y)
        assert float(ma["loss"]) == float(mb["loss"])
    _assert_trees(a.params, b.params, rtol=1e-6, atol=1e-8)


def test_mixup_through_the_hook_reaches_the_loss_as_soft_labels():
    """Reference: jr.mixup by hand on one-hot labels, then optax.softmax_cross_entropy on the soft labels."""
    tx = optax.sgd(0.1)

    def augment(key, x, y):
        return jr.mixup(key, x, jax.nn.one_hot(y, C), 0.4)

    step = jr.make_train_step(_apply, optax.softmax_cross_entropy, tx, augment=augment, donate=False)
    state = _state(tx)
    _, metrics = step(state, X, Y)
    xm, ym = augment(stream_key(state.key, AUGMENT_STREAM, state.step), X, Y)
    assert float(jnp.min(jnp.max(ym, -1))) < 1.0  # labels are soft
    outputs, _ = _apply(state.params, {}, xm, key=jax.random.fold_in(state.key, 0), training=True)
    np.testing.assert_allclose(metrics["loss"], jnp.mean(optax.softmax_cross_entropy(outputs, ym)), rtol=1e-6)


def test_output_penalties_rdrop_input_gradient_and_jacobian_add_their_terms():
    """Reference: each term recomputed by hand from the model with the step's keys; penalty metric = sum."""
    tx = optax.sgd(0.1)
    state = _state(tx)
    key = jax.random.fold_in(state.key, 0)
    out_a, _ = _apply(state.params, {}, X, key=key, training=True)
    out_b, _ = _apply(state.params, {}, X, key=jax.random.fold_in(key, 1), training=True)

    conf = jr.make_train_step(_apply, CE, tx, output_penalties=[(lambda o, y: jr.confidence_penalty(o), 0.5)],
                              donate=False)
    _, m = conf(state, X, Y)
    np.testing.assert_allclose(m["penalty"], 0.5 * jr.confidence_penalty(out_a), rtol=1e-6)

    rdrop = jr.make_train_step(_apply, CE, tx, rdrop=2.0, donate=False)
    _, m = rdrop(state, X, Y)
    np.testing.assert_allclose(m["loss"], 0.5 * (jnp.mean(CE(out_a, Y)) + jnp.mean(CE(out_b, Y))), rtol=1e-6)
    np.testing.assert_allclose(m["penalty"], 2.0 * jr.rdrop_loss(out_a, out_b), rtol=1e-6)
    assert float(m["penalty"]) > 0  # two dropout masks: the passes differ

    grad_pen = jr.make_train_step(_apply, CE, tx, input_gradient=0.3, donate=False)
    _, m = grad_pen(state, X, Y)
    expected = jr.input_gradient_penalty(lambda x: CE(_apply(state.params, {}, x, key=key, training=True)[0], Y), X)
    np.testing.assert_allclose(m["penalty"], 0.3 * expected, rtol=1e-5)

    jac = jr.make_train_step(_apply, CE, tx, jacobian=0.2, jacobian_projections=3, donate=False)
    _, m = jac(state, X, Y)
    from jaxreg.train import PROJECTION_STREAM

    expected = jr.jacobian_penalty(stream_key(state.key, PROJECTION_STREAM, 0),
                                   lambda x: _apply(state.params, {}, x, key=key, training=True)[0], X,
                                   num_projections=3)
    np.testing.assert_allclose(m["penalty"], 0.2 * expected, rtol=1e-5)


def test_bad_hooks_are_named_errors():
    tx = optax.sgd(0.1)
    with pytest.raises(TypeError, match="augment"):
        jr.make_train_step(_apply, CE, tx, augment="mixup")
    with pytest.raises(TypeError, match="output_penalties\\[0\\]"):
        jr.make_train_step(_apply, CE, tx, output_penalties=[jr.confidence_penalty])
    with pytest.raises(ValueError, match="rdrop"):
        jr.make_train_step(_apply, CE, tx, rdrop=-1.0)
    state = _state(tx)
    one_array = jr.make_train_step(_apply, CE, tx, augment=lambda k, x, y: x, donate=False)
    with pytest.raises(TypeError, match="pair"):
        one_array(state, X, Y)
    shrink = jr.make_train_step(_apply, CE, tx, augment=lambda k, x, y: (x[:4], y[:4]), donate=False)
    with pytest.raises(ValueError, match="batch size"):
        shrink(state, X, Y)
    vector = jr.make_train_step(_apply, CE, tx, output_penalties=[(lambda o, y: o, 1.0)], donate=False)
    with pytest.raises(ValueError, match="scalar"):
        vector(state, X, Y)
    with pytest.raises(ValueError, match="ema_decay"):
        jr.create_train_state(_params(), tx, jax.random.key(0), ema_decay=1.0)
    with pytest.raises(ValueError, match="swa_start"):
        jr.create_train_state(_params(), tx, jax.random.key(0), swa_start=-1)
    with pytest.raises(ValueError, match="ema_decay"):
        jr.make_eval_step(_apply, CE, average="ema")(state, X, Y)


# ------------------------------------------------------------------------------------------ averaging


def test_ema_and_swa_follow_their_formulas_and_skip_skipped_steps():
    """Reference: numpy over the sequence of params after each step. EMA: ema = d ema + (1-d) p from the
    initial params (optax.incremental_update); SWA: torch AveragedModel's default, the mean of the params
    after steps >= swa_start. A skipped (NaN) step changes neither."""
    tx = optax.adam(0.05)
    step = jr.make_train_step(_apply, CE, tx)
    state = _state(tx, ema_decay=0.8, swa_start=2)
    ema = _leaves(state.params)
    seen = []
    for i in range(6):
        y = Y if i != 3 else jnp.full_like(Y, -1).at[0].set(0) * 0 + Y  # labels stay valid
        x = X if i != 4 else X.at[0, 0].set(jnp.nan)                    # step 4 is skipped
        state, metrics = step(state, x, y)
        if int(metrics["skipped"]):
            continue
        params = _leaves(state.params)
        ema = [0.8 * e + 0.2 * p for e, p in zip(ema, params)]
        if i >= 2:
            seen.append(params)
    assert int(state.skipped) == 1
    for got, want in zip(_leaves(state.ema_params), ema):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    swa = [np.mean(np.stack(leaves), 0) for leaves in zip(*seen)]
    for got, want in zip(_leaves(state.swa_params), swa):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert int(state.averages.swa_count) == len(seen) == 3

    evaluate = jr.make_eval_step(_apply, CE, average="ema")
    plain = jr.make_eval_step(_apply, CE)
    np.testing.assert_allclose(evaluate(state, X, Y)["loss"],
                               plain(state.replace(params=state.ema_params), X, Y)["loss"], rtol=1e-6)


def test_averages_in_fit_members_and_resume_match_one_member():
    """Reference: jr.fit of one member. The vmapped loop carries each member's EMA unchanged."""
    tx = optax.sgd(0.1)
    step = jr.make_train_step(_apply, CE, tx, jit=False)
    one, _ = jr.fit(_state(tx, ema_decay=0.9), jax.jit(step, donate_argnums=0), (X, Y), epochs=2, batch_size=4,
                    progress=False)
    stacked = jr.stack_members([_state(tx, ema_decay=0.9), _state(tx, ema_decay=0.5)])
    members, _ = jr.fit_members(stacked, step, (X, Y), epochs=2, batch_size=4, progress=False)
    first = jr.unstack_members(members)[0]
    _assert_trees(first.ema_params, one.ema_params, rtol=1e-6, atol=1e-7)


def test_update_bn_sets_the_mean_of_per_batch_statistics_like_torch():
    """Reference: torch.optim.swa_utils.update_bn's rule (momentum=None: the cumulative average of the
    per-batch statistics), in numpy; flax's biased variance."""
    def apply_fn(params, ms, x, *, key, training):
        h = x @ params["w"]
        h, bn = jr.batch_norm(h, params["bn"], ms["bn"], training=training, momentum=0.9)
        return h, {"bn": bn}

    bn_params, bn_state = jr.batch_norm_init(3)
    params = {"w": jax.random.normal(jax.random.key(0), (D, 3)), "bn": bn_params}
    state = jr.create_train_state(params, optax.sgd(0.1), jax.random.key(0), model_state={"bn": bn_state},
                                  swa_start=0)
    x = jax.random.normal(jax.random.key(2), (12, D)) * 2 + 1
    state = jr.update_bn(apply_fn, state, x, batch_size=4)
    h = np.asarray(x @ params["w"], np.float64).reshape(3, 4, 3)
    np.testing.assert_allclose(state.model_state["bn"].mean, h.mean(1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(state.model_state["bn"].var, h.var(1).mean(0), rtol=1e-4)


def test_sam_in_opaque_mode_matches_optax_s_own_loop():
    """Reference: optax.contrib.sam's documented opaque-mode loop, opt.update(grads, state, params,
    grad_fn=grad_fn) with grad_fn = jax.grad(loss), on a deterministic model."""
    def loss(params, x, y):
        return jnp.mean(CE(_apply(params, {}, x, key=None, training=False)[0], y))

    def make_opt():
        return optax.contrib.sam(optax.sgd(0.1), optax.sgd(0.05), opaque_mode=True)

    opt = make_opt()
    params, opt_state = _params(), opt.init(_params())
    for _ in range(3):
        grads = jax.grad(loss)(params, X, Y)
        updates, opt_state = opt.update(grads, opt_state, params,
                                        grad_fn=lambda p, i: jax.grad(loss)(p, X, Y))
        params = optax.apply_updates(params, updates)

    def apply_det(params, ms, x, *, key, training):
        return _apply(params, ms, x, key=None, training=False)

    tx = make_opt()
    step = jr.make_train_step(apply_det, CE, tx)
    state = jr.create_train_state(_params(), tx, jax.random.key(0))
    for _ in range(3):
        state, _ = step(state, X, Y)
    _assert_trees(state.params, params, rtol=1e-6, atol=1e-7)
    assert not np.allclose(_leaves(params)[0], _leaves(_params())[0])


def test_traced_coefficients_sweep_under_vmap():
    """Reference: one step per coefficient. The engine's coefficients are traceable (a sweep under vmap)."""
    tx = optax.sgd(0.1)

    def one(c, state):
        return jr.make_train_step(_apply, CE, tx, input_gradient=c, rdrop=c, jit=False)(state, X, Y)[1]["penalty"]

    coefs = jnp.array([0.0, 0.1, 0.5])
    swept = jax.jit(jax.vmap(one, in_axes=(0, None)))(coefs, _state(tx))
    single = jax.jit(one)  # one compilation for the three unbatched calls (a traced scalar coefficient)
    singles = [float(single(c, _state(tx))) for c in coefs]
    np.testing.assert_allclose(swept, singles, rtol=1e-5, atol=1e-7)
    assert float(swept[0]) == 0.0 and float(swept[2]) > float(swept[1]) > 0


# ------------------------------------------------------------------------------------ activity penalties


def _keras():
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    return pytest.importorskip("keras")


def test_activity_penalty_through_sow_equals_keras_activity_regularizer():
    """Reference: Keras 3, Dense(H, tanh, activity_regularizer=L2(c)) then Dense(C), the same weights; its
    training loss is the cross-entropy plus sum(model.losses) (the activity L2 divided by the batch size).
    jaxreg: a linen model that sows the hidden activation, penalised through activity_penalties."""
    import functools

    import flax.linen as nn

    keras = _keras()
    c = 0.05
    params = _params()

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            h = jnp.tanh(nn.Dense(H, use_bias=False, name="hidden")(x))
            self.sow("intermediates", "hidden_act", h)
            return nn.Dense(C, use_bias=False, name="out")(h)

    model = keras.Sequential([keras.Input((D,)),
                              keras.layers.Dense(H, activation="tanh", use_bias=False,
                                                 activity_regularizer=keras.regularizers.L2(c)),
                              keras.layers.Dense(C, use_bias=False)])
    model.set_weights([np.asarray(params["w1"]), np.asarray(params["w2"])])
    y_pred = model(np.asarray(X), training=True)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras_total = float(ce(np.asarray(Y), y_pred)) + float(sum(model.losses))

    flax_params = {"hidden": {"kernel": params["w1"]}, "out": {"kernel": params["w2"]}}
    tx = optax.sgd(0.1)
    step = jr.make_train_step(jr.linen_apply(Net()), CE, tx, donate=False,
                              activity_penalties=[(functools.partial(jr.activity_l2, batch_mean=True), c)])
    _, metrics = step(jr.create_train_state(flax_params, tx, jax.random.key(0)), X, Y)
    np.testing.assert_allclose(float(metrics["loss"] + metrics["penalty"]), keras_total, rtol=1e-5)
    assert float(metrics["penalty"]) > 0


def test_activity_penalty_through_nnx_intermediates_and_a_bad_apply_fn():
    """Reference: the penalty recomputed from the hidden activation by hand. nnx: self.sow(nnx.Intermediate)."""
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden, self.out = nnx.Linear(D, H, rngs=rngs), nnx.Linear(H, C, rngs=rngs)

        def __call__(self, x):
            h = jnp.tanh(self.hidden(x))
            self.sow(nnx.Intermediate, "hidden_act", h)
            return self.out(h)

    apply_fn, params, model_state = jr.nnx_apply(Net(nnx.Rngs(0)))
    tx = optax.sgd(0.1)
    state = jr.create_train_state(params, tx, jax.random.key(0), model_state=model_state)
    step = jr.make_train_step(apply_fn, CE, tx, activity_penalties=[(jr.activity_l1, 0.2)], donate=False)
    new_state, metrics = step(state, X, Y)
    h = jnp.tanh(X @ params["hidden"]["kernel"][...] + params["hidden"]["bias"][...])
    np.testing.assert_allclose(metrics["penalty"], 0.2 * jnp.sum(jnp.abs(h)), rtol=1e-5)
    assert jax.tree.structure(new_state.model_state) == jax.tree.structure(state.model_state)
    bad = jr.make_train_step(_apply, CE, tx, activity_penalties=[(jr.activity_l2, 0.1)], donate=False)
    with pytest.raises(TypeError, match="capture_activities"):
        bad(_state(tx), X, Y)


def test_swa_that_averaged_nothing_is_said_once():
    """An SWA start past the run leaves swa_params at the initial params: fit says so (one RuntimeWarning)."""
    tx = optax.sgd(0.1)
    step = jr.make_train_step(_apply, CE, tx)
    with pytest.warns(RuntimeWarning, match="swa_start = 1000 is past the 4 steps") as caught:
        state, _ = jr.fit(_state(tx, swa_start=1000), step, (X, Y), epochs=2, batch_size=4, progress=False)
    assert len([w for w in caught if "SWA" in str(w.message)]) == 1
    _assert_trees(state.swa_params, _params())
