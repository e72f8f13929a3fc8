"""Tests for jaxreg.select (pytree masks) and jaxreg._validate (argument checks).

References: the parameter layouts that flax.linen (``init`` variables with ``params`` and ``batch_stats``) and
flax.nnx (``nnx.state``) actually produce, and ``optax.masked``, which must accept our masks as its own.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxreg as jr
from jaxreg import _validate as v
from jaxreg.select import key_path_str, resolve_mask, selected_leaves


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, tokens, train: bool = True):
        h = nn.Embed(10, 4)(tokens)
        h = nn.Dense(3)(h)
        h = nn.BatchNorm(use_running_average=not train)(h)
        return nn.Conv(2, kernel_size=(2,))(h)


class NnxNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embed = nnx.Embed(10, 4, rngs=rngs)
        self.dense = nnx.Linear(4, 3, rngs=rngs)
        self.bn = nnx.BatchNorm(3, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)


@pytest.fixture(scope="module")
def linen_variables():
    """The variables linen's init produces, in its own layout (``jax.eval_shape``: traced, not compiled),
    filled with numpy values."""
    shapes = jax.eval_shape(LinenNet().init, jax.random.key(0), jnp.zeros((2, 5), jnp.int32))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)


def _selected_paths(tree, mask) -> set[str]:
    flat_mask = jax.tree_util.tree_flatten_with_path(mask)[0]
    return {key_path_str(p) for p, m in flat_mask if m}


def test_kernel_mask_linen_variables(linen_variables):
    """Kernels (dense, conv) and the embedding table are selected; biases, BN scale/bias, batch_stats are not."""
    mask = jr.kernel_mask(linen_variables)
    assert jax.tree.structure(mask) == jax.tree.structure(linen_variables)
    assert _selected_paths(linen_variables, mask) == {
        "params/Dense_0/kernel",
        "params/Conv_0/kernel",
        "params/Embed_0/embedding",
    }
    assert mask["batch_stats"] == {"BatchNorm_0": {"mean": False, "var": False}}


def test_kernel_mask_is_an_optax_mask(linen_variables):
    """optax.masked accepts kernel_mask (as a tree and as a callable): decay lands on kernels only."""
    params = linen_variables["params"]
    zeros = jax.tree.map(jnp.zeros_like, params)
    kernels = {"Dense_0/kernel", "Conv_0/kernel", "Embed_0/embedding"}
    for mask in (jr.kernel_mask(params), jr.kernel_mask):
        tx = optax.masked(optax.add_decayed_weights(1.0), mask)
        updates, _ = tx.update(zeros, tx.init(params), params)
        got = {key_path_str(p): np.asarray(u) for p, u in jax.tree_util.tree_flatten_with_path(updates)[0]}
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            name = key_path_str(path)
            np.testing.assert_array_equal(got[name], leaf if name in kernels else np.zeros_like(leaf))


def test_kernel_mask_nnx_state():
    """Same rule on nnx: Param kernels/embeddings yes; BatchStat, bias, scale, rng key and count no."""
    model = NnxNet(nnx.Rngs(0))
    full = nnx.state(model)
    assert _selected_paths(full, jr.kernel_mask(full)) == {"dense/kernel", "embed/embedding"}
    params = nnx.state(model, nnx.Param)
    mask = jr.kernel_mask(params)
    assert _selected_paths(params, mask) == {"dense/kernel", "embed/embedding"}
    # The mask is itself an nnx State with the params' structure, so it lines up leaf for leaf.
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    assert [x.shape for x in selected_leaves(params, jr.kernel_mask)] == [(4, 3), (10, 4)]


def test_kernel_mask_name_and_rank_rules():
    tree = {
        "a": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2, 2)), "vec": jnp.ones(3), "s": jnp.ones(())},
        "scale": {"w": jnp.ones((2, 2))},  # any path component named like a norm parameter excludes the leaf
        "conv": {"kernel": jnp.ones((3, 3, 2, 4))},
    }
    assert _selected_paths(tree, jr.kernel_mask(tree)) == {"a/kernel", "conv/kernel"}


def test_key_path_str_forms():
    class Pair(NamedTuple):
        w: jax.Array
        b: jax.Array

    tree = {"blocks": [Pair(jnp.ones(1), jnp.ones(1))]}
    paths = [key_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    assert paths == ["blocks/0/w", "blocks/0/b"]
    state = nnx.state(NnxNet(nnx.Rngs(1)), nnx.Param)
    nnx_paths = [key_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert "dense/kernel" in nnx_paths and not any(p.endswith("value") for p in nnx_paths)


def test_path_mask_include_exclude(linen_variables):
    params = linen_variables["params"]
    assert _selected_paths(params, jr.path_mask(params)) == {
        key_path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    assert _selected_paths(params, jr.path_mask(params, include=r"kernel$")) == {"Dense_0/kernel", "Conv_0/kernel"}
    assert _selected_paths(params, jr.path_mask(params, include="kernel", exclude="^Conv")) == {"Dense_0/kernel"}
    assert _selected_paths(params, jr.path_mask(params, exclude="bias|scale")) == {
        "Dense_0/kernel",
        "Conv_0/kernel",
        "Embed_0/embedding",
    }
    with pytest.raises(ValueError, match="regular expression"):
        jr.path_mask(params, include="(")
    with pytest.raises(TypeError, match="positional"):  # patterns are keyword-only
        jr.path_mask(params, "kernel")


def test_resolve_mask_forms():
    tree = {"a": {"x": jnp.ones(2), "y": jnp.ones(3)}, "b": [jnp.ones(1), jnp.ones(2)]}
    full = {"a": {"x": True, "y": True}, "b": [True, True]}
    assert resolve_mask(tree, None) == full
    assert resolve_mask(tree, True) == full
    assert resolve_mask(tree, {"a": False, "b": True}) == {"a": {"x": False, "y": False}, "b": [True, True]}
    assert resolve_mask(tree, {"a": {"x": True, "y": False}, "b": [False, True]}) == {
        "a": {"x": True, "y": False},
        "b": [False, True],
    }
    assert resolve_mask(tree, lambda t: jax.tree.map(lambda leaf: leaf.size > 1, t)) == {
        "a": {"x": True, "y": True},
        "b": [False, True],
    }
    assert [x.shape for x in selected_leaves(tree, {"a": True, "b": [False, True]})] == [(2,), (3,), (2,)]
    assert selected_leaves(tree, False) == []


@pytest.mark.parametrize("bad", [{"a": True}, {"a": True, "b": True, "c": True}, {"a": [True], "b": True}])
def test_resolve_mask_mismatch_names_mask(bad):
    tree = {"a": {"x": jnp.ones(2)}, "b": jnp.ones(1)}
    with pytest.raises(ValueError, match="mask must be a bool pytree"):
        resolve_mask(tree, bad)


def test_selected_leaves_rejects_traced_mask():
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda m: selected_leaves({"a": jnp.ones(2)}, {"a": m}))(True)


# --- _validate -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,low,high,kw,message",
    [
        (1.0, 0.0, 1.0, {"high_inclusive": False}, "rate must be in the range [0, 1), got rate = 1.0."),
        (-0.1, 0.0, 1.0, {}, "rate must be in the range [0, 1], got rate = -0.1."),
        (0.0, 0.0, None, {"low_inclusive": False}, "rate must be in the range (0, inf), got rate = 0.0."),
        (float("nan"), None, None, {}, "rate must be in the range (-inf, inf), got rate = nan."),
        (float("inf"), 0.0, None, {}, "rate must be in the range [0, inf), got rate = inf."),
        (np.array([0.5, 1.5]), 0.0, 1.0, {}, "rate must be in the range [0, 1], got rate = an array holding 1.5."),
        (np.float32(2.5), 0.0, 1.0, {}, "rate must be in the range [0, 1], got rate = 2.5."),
        (jnp.asarray(-1.0), 0.0, None, {}, "rate must be in the range [0, inf), got rate = -1.0."),
    ],
)
def test_check_in_range_message_names_argument_and_value(value, low, high, kw, message):
    with pytest.raises(ValueError) as e:
        v.check_in_range("rate", value, low, high, **kw)
    assert str(e.value) == message


def test_check_in_range_accepts_valid_traced_callable_and_array_values():
    v.check_in_range("rate", 0.0, 0.0, 1.0)
    v.check_in_range("rate", 1, 0.0, 1.0)
    v.check_in_range("rate", np.array([0.5, 0.25]), 0.0, 1.0)  # concrete arrays: every element in range
    v.check_in_range("baseline", float("-inf"), finite=False)  # where an infinity means "none"
    v.check_in_range("rate", optax.linear_schedule(0.0, 2.0, 10), 0.0, 1.0)  # schedules are not evaluated

    @jax.jit
    def traced(rate):
        v.check_in_range("rate", rate, 0.0, 1.0)  # a tracer: cannot be inspected, must pass
        return rate

    assert float(traced(5.0)) == 5.0
    assert jax.vmap(lambda r: (v.check_in_range("rate", r, 0.0, 1.0), r)[1])(jnp.array([2.0, 3.0])).shape == (2,)


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_check_in_range_type_error_names_argument(bad):
    with pytest.raises(TypeError, match="stddev must be a number, got stddev = "):
        v.check_in_range("stddev", bad, 0.0, None)


def test_check_positive_int():
    assert v.check_positive_int("patience", 3) == 3
    assert v.check_positive_int("patience", np.int64(0), minimum=0) == 0
    with pytest.raises(ValueError, match="patience must be an integer >= 1, got patience = 0."):
        v.check_positive_int("patience", 0)
    for bad in (2.0, True, "3"):
        with pytest.raises(TypeError, match="patience"):
            v.check_positive_int("patience", bad)


def test_check_choice_key_and_callable():
    v.check_choice("mode", "rows", ("rows", "columns"))
    with pytest.raises(ValueError, match="mode must be one of 'rows', 'columns', got mode = 'diag'."):
        v.check_choice("mode", "diag", ("rows", "columns"))
    v.check_key(jax.random.key(0), "dropout")
    with pytest.raises(ValueError, match="dropout requires a key.*or deterministic=True"):
        v.check_key(None, "dropout", has_deterministic=True)
    # Functions without a deterministic mode (augmentations, mc_predict) must not suggest one.
    with pytest.raises(ValueError, match=r"^mixup requires a key; pass a jax.random key \(e.g.") as e:
        v.check_key(None, "mixup")
    assert "deterministic" not in str(e.value)
    assert v.check_callable("loss_fn", len) is len
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        v.check_callable("loss_fn", 3)


def test_is_concrete_and_concrete_value():
    assert v.is_concrete(0.5) and v.is_concrete(np.float32(1)) and v.is_concrete(jnp.asarray(2.0))
    assert not v.is_concrete(jnp.ones(2)) and not v.is_concrete("x") and not v.is_concrete(None)
    assert v.concrete_value(jnp.asarray(0.25)) == 0.25 and v.concrete_value(jnp.ones(2)) is None
    seen = []
    jax.jit(lambda x: seen.append((v.is_concrete(x), v.concrete_value(x))) or x)(1.0)
    assert seen == [(False, None)]
    assert math.isnan(v.concrete_value(float("nan")))


def test_check_number():
    """Concrete real scalars (Python, numpy, 0-d JAX of any real dtype) -> float; anything else TypeError."""
    for good, want in [(2, 2.0), (0.5, 0.5), (np.float32(1.5), 1.5), (np.int64(3), 3.0), (jnp.asarray(2.0), 2.0),
                       (jnp.asarray(1.0, jnp.bfloat16), 1.0), (float("inf"), float("inf"))]:
        assert v.check_number("fill_value", good) == want
    for bad in (True, np.bool_(False), "1", [1.0], np.ones(2), None, 1j, len):
        with pytest.raises(TypeError, match="fill_value must be a real number, got fill_value = "):
            v.check_number("fill_value", bad)
    with pytest.raises(TypeError, match="baseline"):
        jax.jit(lambda b: v.check_number("baseline", b))(1.0)


def test_check_axis_and_axes():
    assert v.check_axis("axis", -1, 4) == 3 and v.check_axis("axis", np.int64(1), 2) == 1
    with pytest.raises(ValueError, match=r"^axis must be in the range \[-2, 2\) for a 2-D input, got axis = 2.$"):
        v.check_axis("axis", 2, 2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        v.check_axis("axis", 1.0, 2)
    assert v.check_axes("axis", 0) == (0,) and v.check_axes("axis", [0, -1]) == (0, -1)
    assert v.check_axes("axis", (0, -1), ndim=3) == (0, 2)
    assert v.check_axes("broadcast_dims", (), allow_empty=True) == ()
    for bad in ((), 1.5, True, "0", (0, 1.0), np.array([0])):
        with pytest.raises(TypeError, match="axis must be an int or a non-empty sequence of ints"):
            v.check_axes("axis", bad)
    with pytest.raises(ValueError, match=r"broadcast_dims must be in the range \[-3, 3\)"):
        v.check_axes("broadcast_dims", (3,), ndim=3, allow_empty=True)
    v.check_leaf_axes("axis", (0, -1), (2, 3))
    with pytest.raises(ValueError, match=r"axis = 1 for a leaf of shape \(4,\); deselect it with mask="):
        v.check_leaf_axes("axis", (1,), (4,))
