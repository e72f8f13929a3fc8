"""Tests for the vmapped k-fold / sweep training of jaxreg/cv.py (fit_members, sweep_fit, kfold_fit).

Reference: ``jr.fit`` of each member alone, with the member's configuration as Python constants (a penalty
coefficient and a dropout rate baked into its own step), the same initial state and key, and the fold
masks passed as ``train_data``/``val_data`` weights. Member ``i`` of a vmapped run must equal that run to
float tolerance (params, batch-norm statistics, every history entry) and take the same early-stopping
decisions; with ``restore_best=False`` a member that stops early keeps the params of its stop epoch, which
checks that stopped members are frozen while the others train on. The model is a functional MLP built from
``jr.batch_norm`` and ``jr.dropout`` (which takes a traced rate); shapes are tiny and every compiled
program is shared through module-level objects.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr

N, D, H, C, B = 60, 5, 8, 3, 10  # examples, features, hidden units, classes, batch size
LOSS = optax.softmax_cross_entropy_with_integer_labels
# Adam under reduce_on_plateau: fit_members must feed each member its previous validation loss, as jr.fit does.
TX = optax.chain(
    optax.adam(3e-2), optax.contrib.reduce_on_plateau(patience=1, factor=0.5, accumulation_size=N // B)
)

X = jax.random.normal(jax.random.key(10), (N, D))
Y = jnp.argmax(X[:, :C] + 0.5 * jax.random.normal(jax.random.key(11), (N, C)), axis=-1).astype(jnp.int32)
X_VAL = jax.random.normal(jax.random.key(12), (N, D))
Y_VAL = jnp.argmax(X_VAL[:, :C], axis=-1).astype(jnp.int32)


def _init(key):
    k0, k1 = jax.random.split(key)
    bn_params, bn_state = jr.batch_norm_init(H)
    params = {
        "dense0": {"kernel": jax.random.normal(k0, (D, H)) / np.sqrt(D)},
        "bn": bn_params,
        "dense1": {"kernel": jax.random.normal(k1, (H, C)) / np.sqrt(H), "bias": jnp.zeros(C)},
    }
    return params, {"bn": bn_state}


def make_apply(rate):
    """The model with its dropout rate (a Python float, or a traced array inside a vmapped sweep)."""

    def apply_fn(params, model_state, x, *, key, training):
        h = x @ params["dense0"]["kernel"]
        h, bn = jr.batch_norm(h, params["bn"], model_state["bn"], training=training, momentum=0.9)
        h = jr.dropout(key, jax.nn.relu(h), rate, deterministic=not training)
        return h @ params["dense1"]["kernel"] + params["dense1"]["bias"], {"bn": bn}

    return apply_fn


def make_step(h):
    """Member step with traced hyperparameters: L2 coefficient and dropout rate."""
    penalties = [(jr.l2, h["l2"], jr.kernel_mask)]
    return jr.make_train_step(make_apply(h["rate"]), LOSS, TX, penalties=penalties, jit=False)


@functools.lru_cache(maxsize=None)
def reference_step(l2, rate):
    """The same member as a plain jitted step with Python-constant hyperparameters (what jr.fit gets).

    Cached, so that the sweep and k-fold tests share the references' compilations."""
    return jr.make_train_step(make_apply(rate), LOSS, TX, penalties=[(jr.l2, l2, jr.kernel_mask)])


EVAL = jr.make_eval_step(make_apply(0.0), LOSS)
PARAMS, MODEL_STATE = _init(jax.random.key(0))


def _state(seed=1):
    return jr.create_train_state(PARAMS, TX, jax.random.key(seed), model_state=MODEL_STATE)


def _assert_member_equals_fit(states, histories, i, ref_state, ref_history):
    member = jr.unstack_members(states)[i]
    for a, b in zip(jax.tree.leaves((member.params, member.model_state)),
                    jax.tree.leaves((ref_state.params, ref_state.model_state))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(member.step) == int(ref_state.step)
    assert sorted(histories[i]) == sorted(ref_history)
    assert histories[i]["epoch"] == ref_history["epoch"]
    for name, values in ref_history.items():
        np.testing.assert_allclose(histories[i][name], values, rtol=1e-5, atol=1e-6, err_msg=name)


# Two settings (L2 coefficient, dropout rate); with patience=1 the strongly regularized one stops early.
SETTINGS = {"l2": jnp.array([0.0, 1.0]), "rate": jnp.array([0.0, 0.5])}
EPOCHS = 10


def _reference_fit(g, train_data, val_data, stopper, **kwargs):
    step = reference_step(float(SETTINGS["l2"][g]), float(SETTINGS["rate"][g]))
    return jr.fit(_state(), step, train_data, epochs=EPOCHS, batch_size=B, val_data=val_data, eval_step=EVAL,
                  early_stopping=stopper, progress=False, **kwargs)


def test_sweep_members_equal_fit_alone_and_stopped_members_freeze():
    """Reference: jr.fit of each (l2, rate) setting alone. restore_best=False, so a member that stops early
    ends with its stop-epoch params only if it was frozen while the other kept training."""
    stopper = jr.EarlyStopping(patience=1, restore_best=False)
    states, histories = jr.sweep_fit(
        _state(), make_step, (X, Y), hparams=SETTINGS, epochs=EPOCHS, batch_size=B,
        val_data=(X_VAL, Y_VAL), eval_step=EVAL, early_stopping=stopper,
    )
    lengths = [len(h["epoch"]) for h in histories]
    assert lengths[1] < lengths[0], lengths  # the members stop at different epochs
    for g in range(2):
        ref_state, ref_history = _reference_fit(g, (X, Y), (X_VAL, Y_VAL), stopper)
        _assert_member_equals_fit(states, histories, g, ref_state, ref_history)
        stopped = jr.unstack_members(states.stopper)[g]
        assert bool(stopped.should_stop) == bool(ref_state.stopper.should_stop)
        assert int(stopped.stopped_step) == int(ref_state.stopper.stopped_step)
    # The stronger the L2 penalty, the smaller the kernels (which member got which value).
    norms = [float(jnp.linalg.norm(p["dense0"]["kernel"])) for p in jr.unstack_members(states.params)]
    assert norms[0] > norms[1]


def test_kfold_cross_sweep_members_equal_fit_alone():
    """Reference: jr.fit on (x, y, masks[f]) validated on (x, y, ~masks[f]) for every setting g and fold f,
    members ordered g * k + f; restore_best=True and eval_train=True."""
    k, fold_key = 2, jax.random.key(5)
    stopper = jr.EarlyStopping(patience=2)
    states, histories = jr.kfold_fit(
        _state(), make_step, (X, Y), k=k, key=fold_key, hparams=SETTINGS, epochs=EPOCHS, batch_size=B,
        eval_step=EVAL, early_stopping=stopper, eval_train=True,
    )
    assert len(histories) == 2 * k and states.step.shape == (2 * k,)
    assert "lr_scale" in histories[0] and "train_eval_loss" in histories[0]
    masks = jr.kfold_masks(N, k, key=fold_key)
    for g in range(2):
        for f in range(k):
            w = masks[f].astype(np.float32)
            ref_state, ref_history = _reference_fit(g, (X, Y, w), (X, Y, 1.0 - w), stopper, eval_train=True)
            _assert_member_equals_fit(states, histories, g * k + f, ref_state, ref_history)


def test_bad_arguments_raise_naming_the_argument():
    stacked = jr.stack_members([_state()] * 3)
    with pytest.raises(ValueError, match="states"):
        jr.fit_members(_state(), reference_step(0.0, 0.0), (X, Y), epochs=1, batch_size=B)
    with pytest.raises(ValueError, match="hparams"):
        jr.fit_members(stacked, make_step, (X, Y), epochs=1, batch_size=B, hparams={"l2": jnp.zeros(2),
                                                                                   "rate": jnp.zeros(2)})
    with pytest.raises(ValueError, match="train_weights"):
        jr.fit_members(stacked, reference_step(0.0, 0.0), (X, Y), epochs=1, batch_size=B,
                       train_weights=np.ones((3, N - 1)))
    with pytest.raises(TypeError, match="train_data"):
        jr.fit_members(stacked, reference_step(0.0, 0.0), (X, Y, np.ones(N)), epochs=1, batch_size=B)
    with pytest.raises(ValueError, match="eval_step"):
        jr.fit_members(stacked, reference_step(0.0, 0.0), (X, Y), epochs=1, batch_size=B, val_data=(X, Y))
    with pytest.raises(ValueError, match="val_data"):
        jr.kfold_fit(_state(), reference_step(0.0, 0.0), (X, Y), k=2, epochs=1, batch_size=B, eval_step=EVAL,
                     val_data=(X, Y))
    with pytest.raises(ValueError, match="k must be"):
        jr.kfold_fit(_state(), reference_step(0.0, 0.0), (X, Y), k=1, epochs=1, batch_size=B, eval_step=EVAL)
    with pytest.raises(ValueError, match="hparams"):
        jr.sweep_fit(_state(), make_step, (X, Y), hparams=None, epochs=1, batch_size=B)


def test_stack_and_unstack_members_round_trip_with_typed_keys():
    """Reference: the input states themselves (numpy equality); typed keys compared through key_data."""
    states = [_state(seed=s) for s in (1, 2)]
    stacked = jr.stack_members(states)
    assert stacked.key.shape == (2,) and stacked.params["dense0"]["kernel"].shape == (2, D, H)
    for original, back in zip(states, jr.unstack_members(stacked)):
        np.testing.assert_array_equal(jax.random.key_data(back.key), jax.random.key_data(original.key))
        for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(original.params)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="at least one"):
        jr.stack_members([])
