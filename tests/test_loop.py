"""Tests for jaxreg/loop.py, jaxreg/epoch.py and jaxreg/members.py beyond test_train.py / test_cv_train.py.

What these pin down: fit and fit_members run ONE epoch program (JAX's jit cache is the only cache: a second
fit with the same step compiles nothing); the early stopper runs inside that program and takes the decisions
of the host-side rule applied to the recorded history (reference: ``jr.EarlyStopping.update`` fed the
history's monitor values one by one, itself tested against Keras in test_early_stopping.py); a mask pytree
(unhashable) works as ``norms_mask``; ``jr.Penalty`` and plain tuples are the same contract.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxreg as jr
from jaxreg import loop

N, D, B = 48, 3, 16
_RNG = np.random.RandomState(0)
X = jnp.asarray(_RNG.normal(size=(N, D)), jnp.float32)
Y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.1 * jnp.asarray(_RNG.normal(size=N), jnp.float32)
XV = jnp.asarray(_RNG.normal(size=(N, D)), jnp.float32)
YV = XV @ jnp.array([1.0, -2.0, 0.5])
TX = optax.sgd(0.05)


def _apply(params, model_state, x, *, key, training):
    return (x @ params["kernel"])[:, 0] + params["bias"], model_state


def _mse(pred, y):
    return (pred - y) ** 2


STEP = jr.make_train_step(_apply, _mse, TX, penalties=[jr.Penalty(jr.l2, 1e-3, jr.kernel_mask)])
EVAL = jr.make_eval_step(_apply, _mse)


def _state(seed=0):
    return jr.create_train_state({"kernel": jnp.zeros((D, 1)), "bias": jnp.zeros(())}, TX, jax.random.key(seed))


def test_a_second_fit_with_the_same_step_compiles_nothing():
    kwargs = dict(epochs=2, batch_size=B, val_data=(XV, YV), eval_step=EVAL, progress=False)
    _, first = jr.fit(_state(), STEP, (X, Y), **kwargs)
    size = loop._epoch_program._cache_size()
    _, second = jr.fit(_state(), STEP, (X, Y), **kwargs)
    assert loop._epoch_program._cache_size() == size
    assert first == second


def test_in_program_stopper_takes_the_host_rule_decisions():
    """Reference: the same EarlyStopping rule applied on the host to the recorded val_loss, one epoch at a time."""
    stopper = jr.EarlyStopping(patience=2, min_delta=0.05, restore_best=True)
    state, history = jr.fit(_state(), STEP, (X, Y), epochs=40, batch_size=B, val_data=(XV, YV), eval_step=EVAL,
                            early_stopping=stopper, progress=False)
    rule = jr.EarlyStopping(patience=2, min_delta=0.05, restore_best=False)  # the same rule, params aside
    reference = rule.init()
    for value in history["val_loss"]:
        assert not bool(reference.should_stop)
        reference = rule.update(reference, jnp.float32(value))
    assert bool(reference.should_stop) and bool(state.stopper.should_stop)
    assert len(history["epoch"]) < 40
    assert int(state.stopper.best_step) == int(reference.best_step)  # min_delta: not simply the argmin
    assert int(state.stopper.stopped_step) == int(reference.stopped_step) == history["epoch"][-1]


def test_fit_members_member_equals_fit_alone_with_a_mask_pytree_for_norms():
    mask = {"kernel": True, "bias": False}  # a pytree: unhashable, so the loop keys its program by identity
    kwargs = dict(epochs=3, batch_size=B, val_data=(XV, YV), eval_step=EVAL, norms_mask=mask)
    state, history = jr.fit(_state(1), STEP, (X, Y), progress=False, **kwargs)
    states, histories = jr.fit_members(jr.stack_members([_state(0), _state(1)]), STEP, (X, Y), **kwargs)
    assert "weight_l2/kernel" in history and "weight_l2/bias" not in history
    assert sorted(histories[1]) == sorted(history)
    for name, values in history.items():
        np.testing.assert_allclose(histories[1][name], values, rtol=1e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(jr.unstack_members(states)[1].params["kernel"], state.params["kernel"], rtol=1e-5)


def test_equal_mask_pytrees_share_one_program_and_a_stopped_state_still_trains_without_a_stopper():
    kwargs = dict(epochs=2, batch_size=B, progress=False)
    jr.fit(_state(), STEP, (X, Y), norms_mask={"kernel": True, "bias": False}, **kwargs)
    size = loop._epoch_program._cache_size()
    jr.fit(_state(), STEP, (X, Y), norms_mask={"kernel": True, "bias": False}, **kwargs)  # an equal, new dict
    assert loop._epoch_program._cache_size() == size

    stopped, history = jr.fit(_state(), STEP, (X, Y), epochs=5, batch_size=B, early_stopping=jr.EarlyStopping(
        patience=0, mode="max", restore_best=False), monitor="train_loss", progress=False)
    assert bool(stopped.stopper.should_stop) and len(history["epoch"]) == 2
    step_before = int(stopped.step)
    # Fine-tuning the result without early stopping trains: the old stopper in the state does not stop it.
    tuned, history = jr.fit(stopped, STEP, (X, Y), **kwargs)
    assert history["epoch"] == [0, 1] and int(tuned.step) == step_before + 2 * (N // B)


def test_an_unhashable_callable_step_works():
    """A callable dataclass (eq=True, not frozen) is unhashable; the loop keys it by identity."""
    import dataclasses

    @dataclasses.dataclass
    class Step:
        inner: object

        def __call__(self, *args):
            return self.inner(*args)

    _, history = jr.fit(_state(), Step(STEP), (X, Y), epochs=1, batch_size=B, progress=False)
    assert history["epoch"] == [0]


def test_penalty_named_tuple_and_plain_tuples_are_one_contract():
    """Reference: numpy MSE + 1e-3 * sum(w**2); the NamedTuple, a 3-tuple and a 2-tuple give the same step."""
    named = jr.Penalty(jr.l2, 1e-3, jr.kernel_mask)
    assert named == (jr.l2, 1e-3, jr.kernel_mask) and jr.Penalty(jr.l2, 1e-3).mask is None
    params = {"kernel": jnp.array([[0.5], [-1.0], [2.0]]), "bias": jnp.array(0.25)}
    expected = 1e-3 * float(np.sum(np.square(np.asarray(params["kernel"]))))
    for penalty in (named, (jr.l2, 1e-3, jr.kernel_mask), (jr.l2, 1e-3, {"kernel": True, "bias": False})):
        step = jr.make_train_step(_apply, _mse, TX, penalties=[penalty])
        state = jr.create_train_state(params, TX, jax.random.key(0))
        _, metrics = step(state, X[:B], Y[:B])
        assert float(metrics["penalty"]) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(TypeError, match=r"jr\.Penalty"):
        jr.make_train_step(_apply, _mse, TX, penalties=[(jr.l2,)])
    with pytest.raises(TypeError, match=r"penalties\[0\] fn"):
        jr.make_train_step(_apply, _mse, TX, penalties=[jr.Penalty("l2", 1.0)])


def test_loop_arguments_are_checked_before_tracing():
    with pytest.raises(TypeError, match="early_stopping must be a jr.EarlyStopping"):
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, early_stopping=3, monitor="train_loss")
    with pytest.raises(TypeError, match="state must be a jr.TrainState"):
        jr.fit({"params": {}}, STEP, (X, Y), epochs=1, batch_size=B)
    with pytest.raises(TypeError, match="states must be jr.TrainStates stacked"):
        jr.fit_members({"params": {}}, STEP, (X, Y), epochs=1, batch_size=B)
    with pytest.raises(ValueError, match="share their leading"):
        jr.fit(_state(), STEP, (X, Y[:5]), epochs=1, batch_size=B)
    with pytest.raises(ValueError, match="val_weights needs val_data"):
        jr.fit_members(jr.stack_members([_state()]), STEP, (X, Y), epochs=1, batch_size=B,
                       val_weights=np.ones((1, N)))
    with pytest.raises(ValueError, match=r"monitor = 'train_accuracy' is not recorded"):
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, early_stopping=jr.EarlyStopping(patience=1),
               monitor="train_accuracy", progress=False)


def test_skipped_steps_warn_once_per_call_with_the_count_and_the_first_epoch():
    """Issue 15, item 3: a NaN example skips its batches; fit says so once (count, first epoch); members too."""
    x = np.asarray(X).copy()
    x[5] = np.nan  # one batch a epoch holds it: 1 of 3 steps skipped in every epoch
    with pytest.warns(RuntimeWarning, match=r"^fit skipped 2 of 6 steps \(the first in epoch 0\)") as record:
        state, history = jr.fit(_state(), STEP, (x, Y), epochs=2, batch_size=B, progress=False)
    assert len(record) == 1 and history["skipped"] == [1, 1] and int(state.skipped) == 2
    members_message = r"^fit_members skipped member 0: 2 of 6 steps .*; member 1: 2 of 6"
    with pytest.warns(RuntimeWarning, match=members_message) as record:
        jr.fit_members(jr.stack_members([_state(), _state()]), STEP, (x, Y), epochs=2, batch_size=B,
                       train_weights=np.stack([np.ones(N), np.ones(N)]).astype(np.float32))
    assert len(record) == 1
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jr.fit(_state(), STEP, (X, Y), epochs=1, batch_size=B, progress=False)  # nothing skipped: no warning


def test_bad_inputs_issue_15_names_the_argument():
    """Issue 15, bad input that used to pass silently or die inside JAX: each now names its argument."""
    key, x = jax.random.key(0), jnp.ones(8)
    with pytest.raises(ValueError, match=r"rate must be in the range \[0, 1\), got rate = an array holding 1.5"):
        jr.dropout(key, x, jnp.full((8,), 1.5))  # silently returned zeros
    with pytest.raises(ValueError, match=r"dropout: rate must be a scalar, got an array of shape \(2,\)"):
        jr.dropout(key, x, jnp.full((2,), 0.5))  # died in broadcasting
    with pytest.raises(TypeError, match="dropout: deterministic must be a bool, got deterministic = 'no'"):
        jr.dropout(key, x, 0.5, deterministic="no")  # was taken as True
    with pytest.raises(ValueError, match=r"alpha must be in the range \[0, inf\), got alpha = inf"):
        jr.elastic_net({"kernel": jnp.ones((2, 2))}, alpha=float("inf"))  # returned inf
    with pytest.raises(ValueError, match=r"factor must be in the range \[0, inf\), got factor = inf"):
        jr.orthogonal({"kernel": jnp.ones((2, 2))}, factor=float("inf"))  # returned NaN
    with pytest.raises(TypeError, match="early_stopping must be a jr.EarlyStopping, got early_stopping = 3"):
        jr.create_train_state({"w": jnp.zeros(2)}, TX, key, early_stopping=3)  # AttributeError
    with pytest.raises(ValueError, match="initial_epoch must be <= epochs = 2, got initial_epoch = 3"):
        jr.fit(_state(), STEP, (X, Y), epochs=2, batch_size=B, initial_epoch=3)  # returned {} untrained


def test_progress_is_one_log_line_per_epoch_off_a_terminal_and_nothing_when_false(caplog):
    # pytest's stderr is not a terminal: progress=True gives Keras verbose=2-style lines on the `jaxreg` logger
    # (reference: the history fit returns, formatted as jaxreg.progress.epoch_line documents).
    kwargs = dict(epochs=2, batch_size=B, val_data=(XV, YV), eval_step=EVAL)
    with caplog.at_level("INFO", logger="jaxreg"):
        _, history = jr.fit(_state(), STEP, (X, Y), progress=True, **kwargs)
        lines = [r.getMessage() for r in caplog.records if r.name == "jaxreg"]
        assert [line.split(" (")[0] for line in lines] == [
            f"fit: epoch {e + 1}/2 loss {history['train_loss'][e]:.4f} val_loss {history['val_loss'][e]:.4f}"
            for e in range(2)]
        caplog.clear()
        states, histories = jr.fit_members(jr.stack_members([_state(0), _state(1)]), STEP, (X, Y), progress=True,
                                           **kwargs)
        (first, _) = [r.getMessage() for r in caplog.records if r.name == "jaxreg"]
        mean = np.mean([h["val_loss"][0] for h in histories])
        assert first.startswith("fit_members: epoch 1/2 members 2 (mean): loss ") and f"val_loss {mean:.4f}" in first
        caplog.clear()
        jr.fit(_state(), STEP, (X, Y), progress=False, **kwargs)
        assert not [r for r in caplog.records if r.name == "jaxreg"]
