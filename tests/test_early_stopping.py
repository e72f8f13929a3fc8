"""Tests for jaxreg/early_stopping.py.

Reference: Keras 3's own ``keras.callbacks.EarlyStopping``, driven epoch by epoch through ``on_train_begin``,
``on_epoch_end`` and ``on_train_end`` on a fake model whose "weights" are the epoch number, for a few hundred
metric sequences and fourteen configurations. Our side runs all of them as one jitted ``lax.scan`` over
steps whose body runs, per configuration, a ``vmap``-ped update over that configuration's batch of sequences.
Metric values lie on a 1/8 grid so that float32 (ours) and Keras' comparisons see the same ties.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr

T = 24  # epochs per sequence
CONFIGS = [  # (patience, min_delta, mode, baseline, start_from_step, restore_best)
    (0, 0.0, "min", None, 0, True),
    (1, 0.0, "min", None, 0, True),
    (3, 0.0, "min", None, 0, True),
    (3, 0.25, "min", None, 0, True),
    (1, 0.5, "min", None, 0, True),
    (6, 0.125, "min", None, 0, True),
    (3, 0.0, "max", None, 0, True),
    (2, 0.25, "max", None, 0, True),
    (3, 0.0, "min", 2.0, 0, True),
    (2, 0.25, "max", 2.5, 0, True),
    (3, 0.0, "min", None, 3, True),
    (0, 0.0, "min", None, 2, True),
    (2, 0.25, "min", 1.5, 4, False),
    (1, 0.0, "max", None, T + 5, True),  # never monitored: Keras keeps the last weights
]


def _sequences(rng: np.random.RandomState) -> np.ndarray:
    """A batch of metric sequences, shape (16, T), values on a 1/8 grid (exact in float32)."""
    grid = 8.0
    seqs = []
    for _ in range(2):
        seqs.append(4 + np.cumsum(rng.randint(-3, 3, T)) / grid)  # random walk, drifting down
        seqs.append(rng.randint(0, 32, T) / grid)  # iid
        seqs.append(4 - np.arange(T) / grid * rng.randint(1, 3))  # strictly decreasing by 1/8 or 2/8
        seqs.append(np.arange(T) / grid * rng.randint(1, 3))  # strictly increasing
        lengths = rng.randint(1, 6, T)
        seqs.append(np.repeat(rng.randint(0, 32, T) / grid, lengths)[:T])  # plateaus
        u = np.abs(np.arange(T) - rng.randint(3, T)) / grid + rng.randint(0, 3, T) / grid
        seqs.append(u)  # U-shape with noise
        nan_walk = 2 + np.cumsum(rng.randint(-2, 3, T)) / grid
        nan_walk[rng.choice(np.arange(5, T), 4, replace=False)] = np.nan  # never the first monitored step
        seqs.append(nan_walk)
        special = rng.randint(0, 32, T) / grid
        special[rng.choice(np.arange(5, T), 3, replace=False)] = [np.inf, -np.inf, np.inf]
        seqs.append(special if rng.rand() < 0.5 else np.full(T, 1.0))
    return np.stack(seqs).astype(np.float32)


class FakeModel:
    """Just enough of a keras Model for the callback: weights are the number of the epoch just run."""

    def __init__(self):
        self.stop_training = False
        self.epoch = -1

    def get_weights(self):
        return [self.epoch]

    def set_weights(self, weights):
        self.epoch = weights[0]


def _keras_run(values, patience, min_delta, mode, baseline, start, restore_best):
    """Drive keras.callbacks.EarlyStopping as model.fit would: stop calling it once stop_training is set."""
    import keras  # here, not at module level: importing keras takes seconds, and collection should not pay it

    callback = keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=patience,
        min_delta=min_delta,
        mode=mode,
        baseline=baseline,
        restore_best_weights=restore_best,
        start_from_epoch=start,
    )
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    stopped = None
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {"val_loss": float(value)})
        if model.stop_training:
            stopped = epoch
            break
    callback.on_train_end()
    best = None if callback.best is None else float(callback.best)
    return stopped, best, callback.wait, callback.best_epoch, model.epoch


def _run_all_stoppers(stoppers, batches):
    """Our side: ONE lax.scan over steps whose body runs, per configuration, a vmapped update over its batch
    of sequences; the params are the step number (an int32 leaf and a float32 vector leaf)."""
    batch = batches[0].shape[0]
    init_params = {"epoch": jnp.zeros(batch, jnp.int32), "w": jnp.zeros((batch, 2))}
    states = [jax.vmap(stopper.init)(init_params) for stopper in stoppers]

    def step(states, xs):
        t, values = xs
        params = {"epoch": jnp.full(batch, t), "w": jnp.full((batch, 2), t, jnp.float32)}
        states = [jax.vmap(s.update)(state, v, params) for s, state, v in zip(stoppers, states, values)]
        return states, [state.should_stop for state in states]

    states, stops = jax.lax.scan(step, states, (jnp.arange(T, dtype=jnp.int32), [v.T for v in batches]))
    results = []
    for stopper, state, stop in zip(stoppers, states, stops):
        # What the training loop holds at the end: the params of the stop step, or of the last step.
        last = jnp.where(state.should_stop, state.stopped_step, T - 1)
        current = {"epoch": last, "w": jnp.stack([last, last], 1).astype(jnp.float32)}
        results.append((state, stop.T, jax.vmap(stopper.final_params)(state, current)))
    return results


def test_matches_keras_callback_on_many_sequences():
    rng = np.random.RandomState(0)
    stoppers = tuple(  # a tuple of hashable stoppers: a static argument of jit
        jr.EarlyStopping(p, min_delta=d, mode=m, baseline=b, start_from_step=s, restore_best=r)
        for p, d, m, b, s, r in CONFIGS
    )
    batches = [_sequences(rng) for _ in CONFIGS]
    # To numpy once: indexing device arrays per sequence would dispatch thousands of tiny ops.
    ours = jax.device_get(jax.jit(_run_all_stoppers, static_argnums=0)(stoppers, batches))
    num_stopped = 0
    for config, values, (states, stops, final) in zip(CONFIGS, batches, ours):
        for b, seq in enumerate(values):
            stopped, best, wait, best_epoch, final_epoch = _keras_run(seq, *config)
            msg = f"config={config} seq={seq.tolist()}"
            our_stop = int(np.argmax(stops[b])) if stops[b].any() else None
            assert our_stop == stopped, msg
            assert int(states.stopped_step[b]) == (-1 if stopped is None else stopped), msg
            assert bool(stops[b, -1]) == (stopped is not None), msg  # once stopped, stays stopped
            if best is None:
                assert np.isnan(states.best_value[b]), msg
            else:
                assert float(states.best_value[b]) == best, msg
                assert int(states.best_step[b]) == best_epoch, msg
            assert int(states.wait[b]) == wait, msg
            assert int(final["epoch"][b]) == final_epoch, msg
            assert float(final["w"][b, 1]) == final_epoch, msg
            num_stopped += stopped is not None
    # The sequences exercise both outcomes: many early stops and many full runs.
    assert num_stopped > 50 and len(CONFIGS) * 16 - num_stopped > 25


def test_nan_is_never_an_improvement():
    """Documented deviation from Keras (which would take a leading NaN as its best); hand-traced expectations.

    step: 0    1    2    3    4
    val:  nan  3.0  2.0  nan  nan   patience=2
    wait: 1    0    0    1    2 -> stop at step 4; best 2.0 at step 2.
    """
    stopper = jr.EarlyStopping(patience=2)
    state = stopper.init(jnp.zeros((), jnp.int32))
    waits = []
    for t, value in enumerate([np.nan, 3.0, 2.0, np.nan, np.nan]):
        state = stopper.update(state, value, jnp.int32(t))
        waits.append(int(state.wait))
        if t == 0:  # like Keras' first monitored epoch, its params are kept as a fallback
            assert int(state.best_step) == 0 and np.isnan(state.best_value)
    assert waits == [1, 0, 0, 1, 2]
    assert bool(state.should_stop) and int(state.stopped_step) == 4
    assert float(state.best_value) == 2.0 and int(state.best_step) == 2
    assert int(stopper.final_params(state, jnp.int32(4))) == 2
    # Keras' `epoch > 0` rule: even with patience 0 a non-improving step 0 does not stop.
    eager = jr.EarlyStopping(patience=0, restore_best=False)
    stops = []
    state = eager.init()
    for value in [np.nan, 3.0, 4.0]:
        state = eager.update(state, value)
        stops.append(bool(state.should_stop))
    assert stops == [False, False, True]


def test_frozen_after_stop_and_runs_in_while_loop():
    """A jitted while_loop that runs until should_stop stops where Keras does; later updates change nothing."""
    values = jnp.asarray([5.0, 4.0, 4.5, 3.0, 3.5, 3.25, 3.0, 2.0, 1.0, 0.5], jnp.float32)
    stopper = jr.EarlyStopping(patience=3, min_delta=0.25)
    keras_stop, _, _, _, keras_final = _keras_run(np.asarray(values), 3, 0.25, "min", None, 0, True)
    assert keras_stop == 6 and keras_final == 3  # Keras: 3.0 at step 6 is not 0.25 better than 3.0

    @jax.jit
    def train_until_stop(values):
        def cond(carry):
            state, t = carry
            return ~state.should_stop & (t < values.shape[0])

        def body(carry):
            state, t = carry
            return stopper.update(state, values[t], {"w": t.astype(jnp.float32)}), t + 1

        init = (stopper.init({"w": jnp.float32(0.0)}), jnp.int32(0))
        state, t = jax.lax.while_loop(cond, body, init)
        frozen = stopper.update(state, jnp.float32(-100.0), {"w": jnp.float32(99.0)})
        return state, t, frozen

    state, steps_run, frozen = train_until_stop(values)
    assert int(steps_run) == keras_stop + 1
    assert int(state.stopped_step) == keras_stop and int(state.step) == keras_stop + 1
    assert float(stopper.final_params(state, {"w": jnp.float32(6.0)})["w"]) == keras_final
    for before, after in zip(jax.tree.leaves(state), jax.tree.leaves(frozen)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        ({"patience": -1}, ValueError, "patience"),
        ({"patience": 1.5}, TypeError, "patience"),
        ({"patience": True}, TypeError, "patience"),
        ({"patience": 1, "min_delta": -0.1}, ValueError, "min_delta"),
        ({"patience": 1, "min_delta": float("nan")}, ValueError, "min_delta"),
        ({"patience": 1, "min_delta": "0.1"}, TypeError, "min_delta"),
        ({"patience": 1, "mode": "maximize"}, ValueError, "mode"),
        ({"patience": 1, "baseline": float("nan")}, ValueError, "baseline"),
        ({"patience": 1, "baseline": [1.0]}, TypeError, "baseline"),
        ({"patience": 1, "start_from_step": -2}, ValueError, "start_from_step"),
        ({"patience": 1, "start_from_step": 2.0}, TypeError, "start_from_step"),
        ({"patience": 1, "restore_best": 1}, TypeError, "restore_best"),
    ],
)
def test_bad_hyperparameters(kwargs, error, name):
    with pytest.raises(error, match=name):
        jr.EarlyStopping(**kwargs)


def test_bad_call_arguments_and_static_structure():
    stopper = jr.EarlyStopping(1)
    with pytest.raises(ValueError, match="params"):
        stopper.init()
    state = stopper.init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="params"):
        stopper.update(state, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        stopper.update(state, jnp.ones(2), {"w": jnp.zeros(3)})
    # restore_best=False keeps no params: best_params is None and final_params returns the current params.
    plain = jr.EarlyStopping(1, restore_best=False)
    plain_state = plain.update(plain.init(), 1.0)
    assert plain_state.best_params is None
    assert jax.tree.structure(plain_state) == jax.tree.structure(plain.init())
    assert plain.final_params(plain_state, "current") == "current"
    # Hyperparameters are normalised Python values, and the stopper is hashable (usable as a static arg).
    assert jr.EarlyStopping(np.int64(2), min_delta=np.float32(0.5)) == jr.EarlyStopping(2, min_delta=0.5)
    assert hash(jr.EarlyStopping(2)) == hash(jr.EarlyStopping(2))


# ---------------------------------------------------------------------------------------------------------
# mode="auto" (issue 15): resolved from the monitored name with Keras' rule
# ---------------------------------------------------------------------------------------------------------

# Reference table, ported from Keras 2's EarlyStopping (keras/callbacks.py, Keras 2.x; not installed here):
#     if "acc" in self.monitor or self.monitor.startswith("fmeasure") or "auc" in self.monitor: np.greater
#     else: np.less
KERAS2_AUTO = {
    "val_loss": "min",
    "loss": "min",
    "train_loss": "min",
    "val_mse": "min",
    "mae": "min",
    "val_acc": "max",
    "acc": "max",
    "val_accuracy": "max",
    "train_accuracy": "max",
    "categorical_accuracy": "max",
    "val_sparse_categorical_accuracy": "max",
    "auc": "max",
    "val_auc": "max",
    "fmeasure": "max",
    "fmeasure_macro": "max",
}
# jaxreg's monitors (fit's monitor=) and the name Keras 3 logs for the same metric (no "train_" prefix).
JAXREG_TO_KERAS3 = {"val_loss": "val_loss", "train_loss": "loss", "val_accuracy": "val_accuracy",
                    "train_accuracy": "accuracy"}


@pytest.mark.parametrize("monitor", sorted(KERAS2_AUTO))
def test_auto_mode_follows_keras2_name_rule(monitor):
    stopper = jr.EarlyStopping(2)
    assert stopper.mode == "auto"  # Keras' default
    resolved = stopper.for_monitor(monitor)
    assert resolved.mode == KERAS2_AUTO[monitor]
    assert resolved == jr.EarlyStopping(2, mode=KERAS2_AUTO[monitor])  # the same static config: one compilation
    for explicit in ("min", "max"):  # an explicit mode is kept
        assert jr.EarlyStopping(2, mode=explicit).for_monitor(monitor).mode == explicit


class _Keras3Model(FakeModel):
    """A fake model whose compiled metrics are Keras 3's own: what _set_monitor_op reads for mode="auto"."""

    def __init__(self):
        super().__init__()
        import keras
        from keras.src.trainers.compile_utils import MetricsList

        self.metrics = [MetricsList([keras.metrics.SparseCategoricalAccuracy(name="accuracy")])]


@pytest.mark.parametrize("monitor", sorted(JAXREG_TO_KERAS3))
def test_auto_mode_matches_keras3_for_the_metrics_fit_records(monitor):
    """Keras 3 (installed) decides by the metric's direction ("loss" is minimized, accuracy's is "up")."""
    import keras
    from keras import ops

    callback = keras.callbacks.EarlyStopping(monitor=JAXREG_TO_KERAS3[monitor], mode="auto")
    callback.set_model(_Keras3Model())
    callback._set_monitor_op()
    keras_mode = {ops.less: "min", ops.greater: "max"}[callback.monitor_op]
    assert jr.EarlyStopping(1).for_monitor(monitor).mode == keras_mode


def test_auto_mode_without_a_monitor_name_minimizes():
    """Used on its own a stopper never learns the name: "auto" is "min", Keras' choice for its default monitor
    "val_loss". The same sequence under "auto" and "min" gives the same states."""
    values = jnp.asarray([3.0, 2.0, 2.5, 2.75, 1.0], jnp.float32)

    def run(stopper):
        def step(state, v):
            state = stopper.update(state, v)
            return state, state.should_stop

        return jax.lax.scan(step, stopper.init(), values)

    auto = run(jr.EarlyStopping(2, restore_best=False))
    minimize = run(jr.EarlyStopping(2, mode="min", restore_best=False))
    for a, b in zip(jax.tree.leaves(auto), jax.tree.leaves(minimize)):
        np.testing.assert_array_equal(a, b)
    assert float(auto[0].best_value) == 2.0 and int(auto[0].stopped_step) == 3
    with pytest.raises(TypeError, match="monitor"):
        jr.EarlyStopping(1).for_monitor(None)
