"""Tests for jaxreg.conv and jaxreg.flax.conv.

Reference: XLA's convolution, ``lax.conv_general_dilated`` (``impl="xla"``), and its autodiff, for the
forward pass, both gradients and second derivatives; ``flax.linen.Conv`` and ``flax.nnx.Conv`` on the same
variables for the layers. Tolerances, relative to the largest magnitude of the reference:

* float32: 2e-5 (measured: <= 5e-7; the custom rule sums the same products in another order);
* bfloat16: 2e-2 for outputs and gradients (about 3 units in bfloat16's last place, 2^-8: products are
  summed in float32 on both sides, then rounded once, but cotangents are rounded at different points).

Shapes are small (a few hundred output pixels) so that the whole file runs in well under 30 s.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxreg.conv import GEMM_MAX_PATCH_WIDTH, conv, conv_general_dilated
from jaxreg.flax.conv import Conv, NnxConv

F32_TOL, BF16_TOL = 2e-5, 2e-2

# (x shape, kernel shape, keyword arguments): strides, string and explicit paddings (negative crops),
# dilations, groups (depthwise included), 1-D and 3-D, narrow patches (im2col GEMM path) and wide ones.
CASES = [
    ((2, 7, 6, 3), (3, 3, 3, 5), {}),
    ((2, 7, 6, 3), (3, 3, 3, 5), {"strides": 2}),
    ((2, 9, 8, 4), (3, 2, 4, 6), {"strides": (2, 3), "padding": "VALID"}),
    ((2, 9, 8, 4), (3, 3, 4, 6), {"rhs_dilation": 2, "padding": "SAME_LOWER"}),
    ((2, 9, 8, 4), (3, 3, 2, 6), {"feature_group_count": 2}),
    ((2, 9, 8, 4), (3, 3, 1, 8), {"feature_group_count": 4, "strides": 2, "padding": ((2, 0), (1, -1))}),
    ((2, 8, 7, 12), (3, 3, 12, 6), {"strides": 2, "rhs_dilation": (1, 2)}),
    ((2, 8, 7, 16), (3, 3, 4, 8), {"feature_group_count": 4, "padding": "VALID"}),
    ((3, 11, 10), (3, 10, 6), {"strides": 2, "padding": ((1, 2),)}),
    ((2, 4, 5, 6, 3), (2, 3, 2, 3, 4), {"padding": "SAME"}),
]
IDS = ["3x3", "stride2", "valid_rect", "dilated", "groups", "depthwise_explicit_pad", "wide_patch",
       "wide_groups", "1d", "3d"]


def _random(shape, seed, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@jax.jit(static_argnames=("impl", "kw"))
def _value_and_vjp(x, kernel, cotangent, impl, kw):
    y, vjp = jax.vjp(lambda x, k: conv(x, k, impl=impl, **dict(kw)), x, kernel)
    return (y, *vjp(cotangent))


def _both(x, kernel, kw, dtype=jnp.float32):
    kw = tuple(sorted(kw.items()))
    y = jax.eval_shape(lambda: conv(x, kernel, impl="xla", **dict(kw)))
    g = _random(y.shape, 9, dtype)
    return _value_and_vjp(x, kernel, g, "custom", kw), _value_and_vjp(x, kernel, g, "xla", kw)


@pytest.mark.parametrize("x_shape, k_shape, kw", CASES, ids=IDS)
def test_forward_and_gradients_match_xla_float32(x_shape, k_shape, kw):
    x, kernel = _random(x_shape, 0), _random(k_shape, 1)
    ours, ref = _both(x, kernel, kw)
    for name, a, b in zip(("y", "dx", "dkernel"), ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32, name
        assert _rel(a, b) < F32_TOL, (name, _rel(a, b))


@pytest.mark.parametrize("case", [0, 5, 6], ids=["gemm", "depthwise", "wide_patch"])
def test_bfloat16_matches_xla_within_stated_tolerance(case):
    x_shape, k_shape, kw = CASES[case]
    x, kernel = _random(x_shape, 0, jnp.bfloat16), _random(k_shape, 1, jnp.bfloat16)
    ours, ref = _both(x, kernel, kw, jnp.bfloat16)
    for name, a, b in zip(("y", "dx", "dkernel"), ours, ref):
        assert a.dtype == jnp.bfloat16, name
        assert _rel(a, b) < BF16_TOL, (name, _rel(a, b))


def test_paths_cover_both_formulations():
    """The grid exercises the im2col GEMM path and XLA's convolution inside the custom rule."""
    widths = [np.prod(k[:-1]) for _, k, _ in CASES]
    assert min(widths) <= GEMM_MAX_PATCH_WIDTH < max(widths)


@pytest.mark.parametrize("case", [1, 5, 6], ids=["gemm_stride2", "depthwise", "wide_patch"])
def test_grad_of_grad_matches_xla(case):
    x_shape, k_shape, kw = CASES[case]
    x, kernel = _random(x_shape, 0), _random(k_shape, 1)

    def second(impl):
        def loss(x, k):
            return jnp.sum(jnp.tanh(conv(x, k, impl=impl, **kw)))

        def grad_norm(x, k):
            dx, dk = jax.grad(loss, (0, 1))(x, k)
            return jnp.sum(dx**2) + jnp.sum(dk**2)

        return jax.jit(jax.grad(grad_norm, (0, 1)))(x, kernel)

    for a, b in zip(second("custom"), second("xla")):
        assert _rel(a, b) < 1e-4


def test_vmap_over_inputs_and_kernels():
    x, kernel = _random((3, 2, 6, 5, 3), 0), _random((3, 3, 3, 3, 4), 1)

    def loss(x, k):
        return jnp.sum(conv(x, k, strides=2, impl="custom") ** 2)

    ours = jax.jit(jax.vmap(jax.value_and_grad(loss, (0, 1))))(x, kernel)
    for i in range(3):
        ref = jax.value_and_grad(lambda x, k: jnp.sum(conv(x, k, strides=2, impl="xla") ** 2), (0, 1))(
            x[i], kernel[i])
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
            assert _rel(a[i], b) < F32_TOL


def _has_custom_vjp(fn, *args):
    return "custom_vjp_call" in str(jax.make_jaxpr(fn)(*args))


def test_auto_selects_the_custom_rule_on_cpu_only(monkeypatch):
    x, kernel = _random((1, 5, 5, 2), 0), _random((3, 3, 2, 2), 1)
    assert jax.default_backend() == "cpu"
    assert _has_custom_vjp(lambda x, k: conv(x, k), x, kernel)
    assert not _has_custom_vjp(lambda x, k: conv(x, k, impl="xla"), x, kernel)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert not _has_custom_vjp(lambda x, k: conv(x, k), x, kernel)  # GPU/TPU: XLA's convolution untouched
    assert _has_custom_vjp(lambda x, k: conv(x, k, impl="custom"), x, kernel)


def test_uncovered_cases_use_xla_convolution():
    """Input dilation and integer inputs go to lax.conv_general_dilated, with the same result."""
    x, kernel = _random((1, 5, 5, 2), 0), _random((3, 3, 2, 2), 1)
    assert not _has_custom_vjp(lambda x, k: conv(x, k, lhs_dilation=2, padding=((1, 1), (1, 1))), x, kernel)
    ours = conv(x, kernel, lhs_dilation=(2, 1), padding=((0, 1), (1, 0)))
    ref = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((0, 1), (1, 0)), lhs_dilation=(2, 1),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_array_equal(ours, ref)
    xi, ki = jnp.ones((1, 4, 4, 2), jnp.int32), jnp.ones((3, 3, 2, 1), jnp.int32)
    assert int(conv(xi, ki)[0, 1, 1, 0]) == 18


def test_forward_mode_raises_on_the_custom_rule_and_works_with_xla():
    x, kernel = _random((1, 5, 5, 2), 0), _random((3, 3, 2, 2), 1)
    with pytest.raises(TypeError):
        jax.jvp(lambda k: conv(x, k, impl="custom"), (kernel,), (kernel,))
    jax.jvp(lambda k: conv(x, k, impl="xla"), (kernel,), (kernel,))


@pytest.mark.parametrize("kwargs, match", [
    ({"x": (5, 2)}, "x must be"),
    ({"k": (3, 2, 2)}, "kernel must have the rank"),
    ({"k": (3, 3, 3, 2)}, "does not fit x"),
    ({"feature_group_count": 2, "k": (3, 3, 1, 3)}, "does not fit x"),
    ({"feature_group_count": 0}, "feature_group_count"),
    ({"strides": (1, 0)}, r"strides\[1\]"),
    ({"strides": (1, 1, 1)}, "strides must be"),
    ({"rhs_dilation": -1}, r"rhs_dilation\[0\]"),
    ({"padding": "FULL"}, "padding must be"),
    ({"padding": ((1, 1),)}, "padding must be"),
    ({"padding": ((1.5, 1), (0, 0))}, "padding must be"),
    ({"impl": "eigen"}, "impl must be"),
    ({"lhs_dilation": 2}, "padding must be explicit"),
    ({"dtype": jnp.bfloat16}, "same dtype"),
])
def test_bad_arguments_raise_naming_the_argument(kwargs, match):
    kwargs = dict(kwargs)
    x = jnp.ones(kwargs.pop("x", (1, 5, 5, 2)))
    kernel = jnp.ones(kwargs.pop("k", (3, 3, 2, 2)), kwargs.pop("dtype", jnp.float32))
    with pytest.raises((ValueError, TypeError), match=match):
        conv(x, kernel, **kwargs)


def test_conv_general_dilated_hook_routes_channels_last_only():
    x, kernel = _random((1, 6, 6, 2), 0), _random((3, 3, 2, 4), 1)
    nhwc = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, ("NHWC", "HWIO", "NHWC"))
    assert _has_custom_vjp(lambda x, k: conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=nhwc),
                           x, kernel)
    xc, kc = jnp.transpose(x, (0, 3, 1, 2)), jnp.transpose(kernel, (3, 2, 0, 1))
    nchw = jax.lax.conv_dimension_numbers(xc.shape, kc.shape, ("NCHW", "OIHW", "NCHW"))
    assert not _has_custom_vjp(lambda x, k: conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=nchw),
                               xc, kc)
    ours = conv_general_dilated(xc, kc, (1, 1), "SAME", dimension_numbers=nchw)
    np.testing.assert_allclose(jnp.transpose(ours, (0, 2, 3, 1)), conv(x, kernel), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# The flax layers

LAYER_CASES = [
    dict(features=4, kernel_size=(3, 3)),
    dict(features=4, kernel_size=(3, 3), strides=2, padding="VALID", use_bias=False,
         mask=np.tril(np.ones((3, 3, 4, 4), np.float32))),
    dict(features=4, kernel_size=(3, 3), padding="CIRCULAR", kernel_dilation=2),
    dict(features=4, kernel_size=(2, 3), padding=1, feature_group_count=2),
    dict(features=6, kernel_size=(3,), padding="CAUSAL"),
    dict(features=4, kernel_size=(3, 3), input_dilation=2, padding=((1, 1), (2, 0))),
]
LAYER_IDS = ["default", "strided_valid_nobias_mask", "circular_dilated", "int_padding_groups", "causal_1d",
             "input_dilation"]


def _layer_input(kw):
    return _random((2, 9) if len(kw["kernel_size"]) == 1 else (2, 7, 6), 3)[..., None] * jnp.ones(4)


@pytest.mark.parametrize("kw", LAYER_CASES, ids=LAYER_IDS)
def test_linen_conv_matches_flax_on_the_same_variables(kw):
    x = _layer_input(kw)
    ours, ref = Conv(**kw), nn.Conv(**kw)
    variables = ref.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, jax.eval_shape(ours.init, jax.random.key(0), x)) == jax.tree.map(
        jnp.shape, variables)

    def loss(module):
        return lambda v, x: jnp.sum(jnp.sin(module.apply(v, x)))

    a = jax.jit(jax.value_and_grad(loss(ours), (0, 1)))(variables, x)
    b = jax.jit(jax.value_and_grad(loss(ref), (0, 1)))(variables, x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert _rel(u, v) < F32_TOL


def test_linen_conv_keeps_flax_names_in_a_model():
    class Net(nn.Module):
        conv: type

        @nn.compact
        def __call__(self, x):
            return self.conv(3, (3, 3))(self.conv(2, (3, 3))(x))

    x = jnp.ones((1, 5, 5, 1))
    ours, ref = jax.jit(Net(Conv).init)(jax.random.key(0), x), jax.jit(Net(nn.Conv).init)(jax.random.key(0), x)
    assert sorted(ours["params"]) == ["Conv_0", "Conv_1"]
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):  # flax's initializers, same key: same bits
        np.testing.assert_array_equal(a, b)


def test_linen_conv_bfloat16_dtype():
    x = _random((2, 6, 6, 3), 0)
    kw = dict(features=4, kernel_size=(3, 3), dtype=jnp.bfloat16)
    variables = nn.Conv(**kw).init(jax.random.key(0), x)
    a, b = Conv(**kw).apply(variables, x), nn.Conv(**kw).apply(variables, x)
    assert a.dtype == b.dtype == jnp.bfloat16 and _rel(a, b) < BF16_TOL


@pytest.mark.parametrize("kw", [dict(kernel_size=(3, 3)), dict(kernel_size=(3, 3), strides=2, padding="CIRCULAR",
                                                                feature_group_count=2, use_bias=False)])
def test_nnx_conv_matches_flax_nnx(kw):
    x = _random((2, 7, 6, 4), 3)
    ours, ref = NnxConv(4, 6, rngs=nnx.Rngs(0), **kw), nnx.Conv(4, 6, rngs=nnx.Rngs(0), **kw)
    assert type(ours.kernel) is type(ref.kernel)
    np.testing.assert_array_equal(ours.kernel[...], ref.kernel[...])
    assert _has_custom_vjp(lambda x: ours(x), x)

    def loss(model, x):
        return jnp.sum(jnp.sin(model(x)))

    a = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(ours, x)
    b = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(ref, x)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert _rel(u, v) < F32_TOL


def test_the_adapters_export_conv_under_flaxs_name():
    from jaxreg.flax import linen as jrl
    from jaxreg.flax import nnx as jrn

    assert jrl.Conv is Conv and jrn.Conv is NnxConv
    assert "Conv" in jrl.__all__ and "Conv" in jrn.__all__

