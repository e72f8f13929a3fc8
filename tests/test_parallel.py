"""Tests for jaxreg/parallel.py: data parallelism with jax.sharding on 8 (simulated) devices.

The test process has already initialized JAX with one CPU device, so the 8-device checks run in a
subprocess started with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``. References:

* dropout masks: ``jax.random.bernoulli(key, 1 - rate, shape)`` (= ``flax.linen.Dropout``'s mask) on the
  unsharded array; the 8-device mask must equal it and the 1-device mask bit for bit;
* training: the same jitted step (MLP with ``jr.batch_norm`` and ``jr.dropout``, Adam, L2) driven on a
  one-device mesh; the 8-device run must give the same losses, params and batch-norm statistics to float
  tolerance (only the all-reduce summation order differs);
* global batch-norm statistics: the running mean after one step equals ``0.1 * mean(x @ kernel)`` over the
  *whole* batch, computed in numpy (per-device statistics would differ);
* ``jr.fit`` on a sharded training set and a replicated state: the one-device ``jr.fit``;
* ``initialize``'s argument checks (nothing is started: the checks come first) and the single-process behaviour
  of ``check_same``, ``local_rows``, ``shard_dataset`` and ``is_main_process``. Several processes:
  ``tests/test_multiprocess.py`` (slow).
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr

SCRIPT = r'''
import jax, jax.numpy as jnp, numpy as np, optax
import jaxreg as jr
from jax.sharding import PartitionSpec as P

assert jax.device_count() == 8, jax.devices()
assert jax.config.jax_threefry_partitionable
mesh8 = jr.parallel.data_mesh()
mesh1 = jr.parallel.data_mesh(jax.devices()[:1])
assert mesh8.shape["data"] == 8 and mesh1.shape["data"] == 1

# 1. Dropout masks: identical on 1 and 8 devices, and equal to jax.random.bernoulli's on one array.
key, rate = jax.random.key(3), 0.5
x = jnp.ones((64, 48))
for impl in ("prng", "hash"):
    drop = jax.jit(lambda k, v: jr.dropout(k, v, rate, mask_impl=impl))
    y8 = drop(key, jr.parallel.shard_batch(mesh8, x))
    y1 = drop(key, jr.parallel.shard_batch(mesh1, x))
    assert len(y8.sharding.device_set) == 8 and y8.sharding.spec == P("data"), y8.sharding
    np.testing.assert_array_equal(np.asarray(y8), np.asarray(y1))
    np.testing.assert_array_equal(np.asarray(y8), np.asarray(drop(key, x)))
    if impl == "prng":
        keep = jax.random.bernoulli(key, 1 - rate, x.shape)
        np.testing.assert_array_equal(np.asarray(y8) != 0, np.asarray(keep))

# 2. Training steps: MLP with batch norm and dropout, batch sharded, state replicated.
N, D, H, C, B = 64, 6, 16, 3, 16
X = jax.random.normal(jax.random.key(10), (N, D))
Y = jnp.argmax(X[:, :C], axis=-1)


def apply_fn(params, model_state, x, *, key, training):
    h = x @ params["dense0"]["kernel"]
    h, bn = jr.batch_norm(h, params["bn"], model_state["bn"], training=training, momentum=0.9)
    h = jr.dropout(key, jax.nn.relu(h), 0.3, deterministic=not training)
    return h @ params["dense1"]["kernel"] + params["dense1"]["bias"], {"bn": bn}


bn_params, bn_state = jr.batch_norm_init(H)
PARAMS = {"dense0": {"kernel": jax.random.normal(jax.random.key(0), (D, H)) / 2.0}, "bn": bn_params,
          "dense1": {"kernel": jax.random.normal(jax.random.key(1), (H, C)) / 4.0, "bias": jnp.zeros(C)}}
TX = optax.adam(1e-2)
LOSS = optax.softmax_cross_entropy_with_integer_labels
STEP = jr.make_train_step(apply_fn, LOSS, TX, penalties=[(jr.l2, 1e-3, jr.kernel_mask)])


def fresh_state():
    return jr.create_train_state(PARAMS, TX, jax.random.key(7), model_state={"bn": bn_state})


def run_steps(mesh, steps=3):
    state = jr.parallel.replicate(mesh, fresh_state())
    losses, means = [], []
    for i in range(steps):
        xb, yb = jr.parallel.shard_batch(mesh, (X[i * B:(i + 1) * B], Y[i * B:(i + 1) * B]))
        state, metrics = STEP(state, xb, yb)
        losses.append(float(metrics["loss"]))
        means.append(np.asarray(state.model_state["bn"].mean))
    return state, losses, means


s8, l8, means8 = run_steps(mesh8)
s1, l1, means1 = run_steps(mesh1)
assert s8.params["dense0"]["kernel"].sharding.is_fully_replicated
assert len(s8.params["dense0"]["kernel"].sharding.device_set) == 8
np.testing.assert_allclose(l8, l1, rtol=1e-5, atol=1e-6)
for a, b in zip(jax.tree.leaves((s8.params, s8.model_state, s8.opt_state)),
                jax.tree.leaves((s1.params, s1.model_state, s1.opt_state))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
# Global batch-norm statistics: running mean after step 1 = 0.1 * mean over the whole first batch (numpy).
h0 = np.asarray(X[:B], np.float64) @ np.asarray(PARAMS["dense0"]["kernel"], np.float64)
np.testing.assert_allclose(means8[0], 0.1 * h0.mean(axis=0), rtol=1e-5, atol=1e-6)

# 3. jr.fit on a sharded training set with a replicated state equals jr.fit on one device.
f8, h8 = jr.fit(jr.parallel.replicate(mesh8, fresh_state()), STEP, jr.parallel.shard_batch(mesh8, (X, Y)),
                epochs=2, batch_size=B, progress=False)
f1, h1 = jr.fit(fresh_state(), STEP, (X, Y), epochs=2, batch_size=B, progress=False)
np.testing.assert_allclose(h8["train_loss"], h1["train_loss"], rtol=1e-5, atol=1e-6)
for a, b in zip(jax.tree.leaves(f8.params), jax.tree.leaves(f1.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

# 4. A batch that does not split evenly over the devices is refused, naming the sizes.
try:
    jr.parallel.shard_batch(mesh8, (jnp.ones((12, 3)), jnp.ones(12)))
except ValueError as err:
    assert "12" in str(err) and "divisible" in str(err) and "8" in str(err), err
else:
    raise AssertionError("shard_batch accepted a batch of 12 on 8 devices")
print("ALL-OK")
'''


@pytest.mark.slow  # a fresh interpreter with 8 host devices (about 15 s): make test-slow / CI
def test_eight_devices_match_one_device_in_subprocess(tmp_path):
    """Runs SCRIPT on 8 simulated CPU devices; every comparison (see the module docstring) is asserted there."""
    script = tmp_path / "parallel_check.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ALL-OK" in result.stdout


def test_single_device_mesh_places_arrays_and_replicate_copies():
    """Reference: the input arrays themselves. One device here: the mesh has one 'data' entry, sharded
    arrays keep their values, and replicate returns fresh buffers (safe to donate)."""
    mesh = jr.parallel.data_mesh()
    assert mesh.axis_names == ("data",) and mesh.shape["data"] == jax.device_count()
    x = jnp.arange(12.0).reshape(4, 3)
    xs, none = jr.parallel.shard_batch(mesh, (x, None))
    assert none is None
    np.testing.assert_array_equal(np.asarray(xs), np.asarray(x))
    tree = {"w": jnp.ones(3), "key": jax.random.key(0)}
    rep = jr.parallel.replicate(mesh, tree)
    assert rep["w"].sharding.is_fully_replicated
    assert rep["w"].unsafe_buffer_pointer() != tree["w"].unsafe_buffer_pointer()
    np.testing.assert_array_equal(jax.random.key_data(rep["key"]), jax.random.key_data(tree["key"]))


def test_bad_arguments():
    mesh = jr.parallel.data_mesh()
    with pytest.raises(ValueError, match="scalar"):
        jr.parallel.shard_batch(mesh, jnp.float32(1.0))
    with pytest.raises(ValueError, match="no axis 'batch'"):
        jr.parallel.shard_batch(mesh, jnp.ones(4), axis_name="batch")
    with pytest.raises(TypeError, match="mesh"):
        jr.parallel.shard_batch("mesh", jnp.ones(4))
    with pytest.raises(TypeError, match="mesh"):
        jr.parallel.replicate(None, jnp.ones(4))
    with pytest.raises(ValueError, match="devices"):
        jr.parallel.data_mesh([])
    with pytest.raises(TypeError, match="axis_name"):
        jr.parallel.data_mesh(axis_name="")


@pytest.mark.parametrize("kwargs, error, match", [
    ({"coordinator_address": "127.0.0.1:0"}, ValueError, r"port of coordinator_address .* \[1, 65535\]"),
    ({"coordinator_address": "127.0.0.1:70000"}, ValueError, "port of coordinator_address"),
    ({"coordinator_address": "127.0.0.1"}, ValueError, "HOST:PORT"),
    ({"coordinator_address": 1234}, TypeError, "coordinator_address"),
    ({"num_processes": 0}, ValueError, "num_processes must be an integer >= 1"),
    ({"num_processes": 2, "process_id": 2}, ValueError, r"process_id must be in \[0, num_processes\) = \[0, 2\)"),
    ({"process_id": -1}, ValueError, "process_id must be an integer >= 0"),
    ({"heartbeat_timeout_seconds": 0}, ValueError, "heartbeat_timeout_seconds"),
])
def test_initialize_refuses_bad_arguments_naming_them(kwargs, error, match):
    """Reference: the documented ranges; nothing is started (the checks come before jax.distributed)."""
    with pytest.raises(error, match=match):
        jr.parallel.initialize(**kwargs)


def test_initialize_after_the_backend_started_says_what_to_do():
    """Reference: JAX's rule that jax.distributed.initialize precedes the backend (here it exists already)."""
    jax.devices()  # make sure: the call below must never try to connect
    with pytest.raises(RuntimeError, match="must run before anything uses JAX's backend.*call it first"):
        jr.parallel.initialize("127.0.0.1:12345", 2, 0)


def test_single_process_helpers():
    """Reference: one process holds every row, is process 0, and has no one to disagree with."""
    mesh = jr.parallel.data_mesh()
    assert jr.parallel.is_main_process()
    assert jr.parallel.local_rows(mesh, 8) == slice(0, 8)
    jr.parallel.check_same({"seed": 0, "data": np.arange(3)})
    with pytest.raises(TypeError, match="name_to_value"):
        jr.parallel.check_same([("seed", 0)])
    x = np.arange(12.0).reshape(4, 3)
    for local in (False, True):
        xs, none = jr.parallel.shard_dataset(mesh, (x, None), local=local)
        assert none is None and xs.sharding.spec == jax.sharding.PartitionSpec("data")
        np.testing.assert_array_equal(np.asarray(xs), x)
    with pytest.raises(TypeError, match="local"):
        jr.parallel.shard_dataset(mesh, x, local="yes")


def test_fingerprints_tell_values_apart():
    """Reference: equality of the values themselves (check_same compares these fingerprints across processes)."""
    from jaxreg.parallel import _fingerprint

    same = [(0, 0), ("none,l2", "none,l2"), (np.arange(3), np.arange(3)), (jnp.ones(2), np.ones(2, np.float32))]
    differ = [(0, 1), ("none", "l2"), (np.arange(3), np.arange(4)), (np.ones(2), np.ones(2, np.float32)), (1, 1.0)]
    assert all(_fingerprint(a) == _fingerprint(b) for a, b in same)
    assert all(_fingerprint(a) != _fingerprint(b) for a, b in differ)
