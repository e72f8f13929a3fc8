"""Channels-last convolution with a reverse-mode rule chosen for XLA:CPU (floor 2).

``conv(x, kernel, ...)`` computes exactly what ``jax.lax.conv_general_dilated`` computes for an ``N...C``
input and a ``...IO`` kernel (NHWC/HWIO in 2-D; any number of spatial axes). On the CPU backend
(``jax.default_backend() == "cpu"``, decided when the function is traced) it goes through a
``jax.custom_vjp`` whose pieces are each the formulation measured fastest on XLA:CPU:

* the input gradient is a *forward* convolution, in the same channels-last layout, of the cotangent
  (padded, and dilated by the strides with ``lax.pad``) with the spatially flipped kernel whose in/out
  features are swapped per group; it calls this rule again, so second derivatives take it too;
* convolutions with a narrow patch (``prod(kernel_size) * in_features_per_group <= GEMM_MAX_PATCH_WIDTH``,
  e.g. a 3x3 first layer on RGB images: 27) run forward and weight gradient as one GEMM over the
  shifted, strided slices of the padded input (im2col): the patch matrix is small, and XLA:CPU's
  convolution is slow on 3 input channels;
* wider patches keep XLA's convolution for the forward pass and for the weight gradient: there the
  im2col matrix is ``prod(kernel_size)`` times the input, and writing it costs more than the GEMM saves
  (see ``benchmarks/NOTES.md``, where every figure behind these choices is recorded).

Other backends (GPU, TPU) call ``lax.conv_general_dilated`` untouched, as do, on CPU, the cases the rule
does not cover: input (lhs) dilation (transposed convolutions), non-floating dtypes, and outputs with an
empty spatial axis. ``impl="xla"`` asks for XLA's convolution everywhere, ``impl="custom"`` for the custom
rule everywhere (tests use it to exercise the rule on any backend).

The price of a custom VJP is that pure forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) of the
custom path raises ``TypeError``; reverse mode (``jax.grad``, ``jax.vjp``, ``jax.jacrev``), nested reverse
mode (grad of grad) and ``jax.vmap`` work. Pass ``impl="xla"`` where forward mode is needed.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreg._validate import check_choice, check_positive_int

__all__ = ["conv", "conv_general_dilated", "GEMM_MAX_PATCH_WIDTH"]

GEMM_MAX_PATCH_WIDTH = 64
"""Widest patch (``prod(kernel_size) * in_features_per_group``) computed as an im2col GEMM on CPU."""

_IMPLS = ("auto", "xla", "custom")
_PADDINGS = ("SAME", "SAME_LOWER", "VALID")
_CUSTOM_DTYPES = (jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16)

Padding = str | Sequence[tuple[int, int]]


class _ConvConfig(NamedTuple):
    """Static arguments of one convolution, resolved to explicit per-axis tuples (hashable)."""

    strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]  # (low, high) per spatial axis, may be negative
    rhs_dilation: tuple[int, ...]
    groups: int
    precision: Any


def _dimension_numbers(nd: int) -> lax.ConvDimensionNumbers:
    """``N<spatial>C`` input and output, ``<spatial>IO`` kernel, for ``nd`` spatial axes."""
    spatial = tuple(range(1, nd + 1))
    return lax.ConvDimensionNumbers(lhs_spec=(0, nd + 1, *spatial), rhs_spec=(nd + 1, nd, *range(nd)),
                                    out_spec=(0, nd + 1, *spatial))


def _tuple_arg(name: str, value: int | Sequence[int] | None, nd: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * nd
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * nd
    value = tuple(value)
    if len(value) != nd:
        raise ValueError(f"conv: {name} must be an int or a sequence of {nd} ints (one per spatial axis), "
                         f"got {name} = {value}.")
    return tuple(check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


def _explicit_padding(padding: Any, nd: int) -> tuple[tuple[int, int], ...] | None:
    """``padding`` as ``nd`` (low, high) int pairs; ``None`` for a string mode (resolved later)."""
    if isinstance(padding, str):
        check_choice("padding", padding.upper(), _PADDINGS)
        return None
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
        ok = len(pairs) == nd and all(float(a) == b for p, q in zip(padding, pairs) for a, b in zip(p, q))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"conv: padding must be 'SAME', 'SAME_LOWER', 'VALID' or {nd} (low, high) int pairs, "
                         f"got padding = {padding!r}.")
    return pairs


def _lax_conv(x: jax.Array, kernel: jax.Array, cfg: _ConvConfig, lhs_dilation: tuple[int, ...] | None = None):
    return lax.conv_general_dilated(
        x, kernel, cfg.strides, cfg.padding, lhs_dilation=lhs_dilation, rhs_dilation=cfg.rhs_dilation,
        dimension_numbers=_dimension_numbers(x.ndim - 2), feature_group_count=cfg.groups,
        precision=cfg.precision)


def _out_spatial(in_spatial: Sequence[int], kernel_spatial: Sequence[int], cfg: _ConvConfig) -> tuple[int, ...]:
    out = []
    for n, k, (lo, hi), s, d in zip(in_spatial, kernel_spatial, cfg.padding, cfg.strides, cfg.rhs_dilation):
        out.append((n + lo + hi - ((k - 1) * d + 1)) // s + 1)
    return tuple(out)


def _accumulator(dtype: Any) -> Any:
    # Half-precision products are summed in float32, as XLA:CPU's convolution does, then rounded once.
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


def _shifted_slices(x: jax.Array, kernel_spatial: Sequence[int], cfg: _ConvConfig) -> jax.Array:
    """im2col: ``(N, *out_spatial, prod(kernel_spatial), C)``, patch element ``k`` in the kernel's order."""
    zero = jnp.zeros((), x.dtype)
    xp = lax.pad(x, zero, ((0, 0, 0), *((lo, hi, 0) for lo, hi in cfg.padding), (0, 0, 0)))
    out = _out_spatial(x.shape[1:-1], kernel_spatial, cfg)
    slices = []
    for offset in itertools.product(*(range(k) for k in kernel_spatial)):
        start = tuple(o * d for o, d in zip(offset, cfg.rhs_dilation))
        limit = tuple(b + (n - 1) * s + 1 for b, n, s in zip(start, out, cfg.strides))
        slices.append(lax.slice(xp, (0, *start, 0), (xp.shape[0], *limit, xp.shape[-1]), (1, *cfg.strides, 1)))
    return jnp.stack(slices, axis=-2)


def _gemm_forward(x: jax.Array, kernel: jax.Array, cfg: _ConvConfig) -> jax.Array:
    *kernel_spatial, in_per_group, out_features = kernel.shape
    g = cfg.groups
    patches = _shifted_slices(x, kernel_spatial, cfg)
    lead = patches.shape[:-2]
    taps = math.prod(kernel_spatial)
    acc = _accumulator(x.dtype)
    if g == 1:
        y = lax.dot_general(patches.reshape(-1, taps * in_per_group), kernel.reshape(-1, out_features),
                            (((1,), (0,)), ((), ())), precision=cfg.precision, preferred_element_type=acc)
    else:
        p = patches.reshape(-1, taps, g, in_per_group)
        w = kernel.reshape(taps, in_per_group, g, out_features // g)
        y = lax.dot_general(p, w, (((1, 3), (0, 1)), ((2,), (2,))), precision=cfg.precision,
                            preferred_element_type=acc)  # (g, M, out_per_group)
        y = jnp.swapaxes(y, 0, 1)
    return y.reshape(*lead, out_features).astype(x.dtype)


def _gemm_kernel_grad(x: jax.Array, dy: jax.Array, kernel_shape: tuple[int, ...], cfg: _ConvConfig) -> jax.Array:
    *kernel_spatial, in_per_group, out_features = kernel_shape
    g = cfg.groups
    patches = _shifted_slices(x, kernel_spatial, cfg)
    taps = math.prod(kernel_spatial)
    acc = _accumulator(x.dtype)
    if g == 1:
        dw = lax.dot_general(patches.reshape(-1, taps * in_per_group), dy.reshape(-1, out_features),
                             (((0,), (0,)), ((), ())), precision=cfg.precision, preferred_element_type=acc)
    else:
        p = patches.reshape(-1, taps, g, in_per_group)
        d = dy.reshape(-1, g, out_features // g)
        dw = lax.dot_general(p, d, (((0,), (0,)), ((2,), (1,))), precision=cfg.precision,
                             preferred_element_type=acc)  # (g, taps, in_per_group, out_per_group)
        dw = jnp.transpose(dw, (1, 2, 0, 3))
    return dw.reshape(kernel_shape).astype(x.dtype)


def _use_gemm(kernel_shape: tuple[int, ...]) -> bool:
    return math.prod(kernel_shape[:-1]) <= GEMM_MAX_PATCH_WIDTH


def _forward(x: jax.Array, kernel: jax.Array, cfg: _ConvConfig) -> jax.Array:
    return _gemm_forward(x, kernel, cfg) if _use_gemm(kernel.shape) else _lax_conv(x, kernel, cfg)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _custom_conv(x: jax.Array, kernel: jax.Array, cfg: _ConvConfig) -> jax.Array:
    return _forward(x, kernel, cfg)


def _custom_conv_fwd(x, kernel, cfg):
    return _forward(x, kernel, cfg), (x, kernel)


def _input_grad(dy: jax.Array, kernel: jax.Array, in_spatial: Sequence[int], cfg: _ConvConfig) -> jax.Array:
    """``d(loss)/dx``: a stride-1 VALID forward convolution of the strided-and-padded cotangent."""
    *kernel_spatial, in_per_group, out_features = kernel.shape
    nd, g = len(kernel_spatial), cfg.groups
    # Per group, swap the kernel's in/out features; then flip it in space (correlation -> convolution).
    w = kernel.reshape(*kernel_spatial, in_per_group, g, out_features // g)
    w = jnp.swapaxes(w, -1, -3).reshape(*kernel_spatial, out_features // g, g * in_per_group)
    w = lax.rev(w, tuple(range(nd)))
    pads = []
    out = dy.shape[1:-1]
    for n, k, (lo, _), s, d, o in zip(in_spatial, kernel_spatial, cfg.padding, cfg.strides, cfg.rhs_dilation, out):
        span = (k - 1) * d + 1
        pads.append((span - 1 - lo, n + lo - (o - 1) * s - 1, s - 1))
    dyp = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), *pads, (0, 0, 0)))
    unit = cfg._replace(strides=(1,) * nd, padding=((0, 0),) * nd)
    return _custom_conv(dyp, w, unit)


def _custom_conv_bwd(cfg, residuals, dy):
    x, kernel = residuals
    dx = _input_grad(dy, kernel, x.shape[1:-1], cfg)
    if _use_gemm(kernel.shape):
        dw = _gemm_kernel_grad(x, dy, kernel.shape, cfg)
    else:
        # XLA's own weight-gradient convolution (batch as the contracted feature): faster on CPU than the
        # im2col GEMM once the patch matrix is wide (benchmarks/NOTES.md), and itself differentiable.
        dw = jax.vjp(lambda k: _lax_conv(x, k, cfg), kernel)[1](dy)[0]
    return dx, dw


_custom_conv.defvjp(_custom_conv_fwd, _custom_conv_bwd)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: int | Sequence[int] | None = None,
    padding: Padding = "SAME",
    lhs_dilation: int | Sequence[int] | None = None,
    rhs_dilation: int | Sequence[int] | None = None,
    feature_group_count: int = 1,
    precision: Any = None,
    impl: str = "auto",
) -> jax.Array:
    """Channels-last convolution equal to ``lax.conv_general_dilated``, with a CPU-tuned backward pass.

    ``y[n, o..., f] = sum over k..., c of x_padded[n, o*s + k*d ..., c] * kernel[k..., c, f]`` per feature
    group, for ``x`` of shape ``(batch, *spatial, in_features)`` and ``kernel`` of shape
    ``(*kernel_size, in_features // feature_group_count, out_features)`` (NHWC/HWIO in 2-D). On CPU the
    reverse-mode rule of the module docstring replaces XLA's backward convolutions; elsewhere this is
    ``lax.conv_general_dilated`` itself.

    Args:
      x: input ``(batch, *spatial, in_features)``, floating dtype (others go to XLA's convolution).
      kernel: ``(*kernel_size, in_features // feature_group_count, out_features)``, same dtype as ``x``.
      strides: window stride per spatial axis (an int for all); default 1.
      padding: ``'SAME'``, ``'SAME_LOWER'``, ``'VALID'`` or one ``(low, high)`` pair per spatial axis
        (negative values crop), as in ``lax.conv_general_dilated``.
      lhs_dilation: input dilation (a transposed convolution); values other than 1 use XLA's convolution
        on every backend and need an explicit ``padding``.
      rhs_dilation: kernel dilation (atrous convolution) per spatial axis; default 1.
      feature_group_count: grouped convolution (``in_features`` and ``out_features`` divisible by it;
        ``in_features`` for a depthwise convolution).
      precision: passed to every convolution and matmul (``lax.Precision`` or ``None``).
      impl: ``'auto'`` (the custom rule on the CPU backend, XLA's convolution elsewhere), ``'xla'``
        (XLA's convolution everywhere, forward-mode differentiable), ``'custom'`` (the rule everywhere).

    Returns:
      ``(batch, *out_spatial, out_features)`` in ``x.dtype``.

    Raises:
      ValueError: for a kernel whose rank, feature count or groups do not fit ``x``, a bad ``padding``,
        stride, dilation or ``impl``, or different dtypes for ``x`` and ``kernel``; each names the argument.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> kernel = jnp.ones((3, 3, 3, 4)) / 27
      >>> y = jr.conv(x, kernel, padding="SAME")
      >>> y.shape, float(y[0, 4, 4, 0]), float(y[0, 0, 0, 0])   # interior: 27 taps; corner: 12 of 27
      ((2, 8, 8, 4), 1.0, 0.444...)
      >>> g = jax.grad(lambda k: jnp.sum(jr.conv(x, k, strides=2) ** 2))(kernel)
      >>> g.shape
      (3, 3, 3, 4)
    """
    check_choice("impl", impl, _IMPLS)
    x_ndim, k_ndim = jnp.ndim(x), jnp.ndim(kernel)
    if x_ndim < 3:
        raise ValueError(f"conv: x must be (batch, *spatial, features) with at least one spatial axis, got an "
                         f"input of shape {jnp.shape(x)}.")
    if k_ndim != x_ndim:
        raise ValueError(f"conv: kernel must have the rank of x ({x_ndim}: *kernel_size, in_features, "
                         f"out_features), got a kernel of shape {jnp.shape(kernel)}.")
    nd = x_ndim - 2
    groups = check_positive_int("feature_group_count", feature_group_count)
    in_features, (k_in, k_out) = jnp.shape(x)[-1], jnp.shape(kernel)[-2:]
    if k_in * groups != in_features or k_out % groups:
        raise ValueError(f"conv: kernel of shape {jnp.shape(kernel)} does not fit x with {in_features} features and "
                         f"feature_group_count = {groups}: kernel.shape[-2] must be in_features // "
                         f"feature_group_count and kernel.shape[-1] divisible by feature_group_count.")
    x_dtype, k_dtype = jnp.result_type(x), jnp.result_type(kernel)
    if x_dtype != k_dtype:
        raise ValueError(f"conv: x and kernel must have the same dtype, got x.dtype = {x_dtype} and kernel.dtype = "
                         f"{k_dtype}; cast one of them.")
    strides_t = _tuple_arg("strides", strides, nd)
    rhs_t = _tuple_arg("rhs_dilation", rhs_dilation, nd)
    lhs_t = _tuple_arg("lhs_dilation", lhs_dilation, nd)
    pairs = _explicit_padding(padding, nd)
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    if pairs is None:
        if any(d != 1 for d in lhs_t):
            raise ValueError(f"conv: with lhs_dilation = {lhs_t}, padding must be explicit (low, high) pairs, got "
                             f"padding = {padding!r} (as in lax.conv_general_dilated).")
        span = tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[:nd], rhs_t))
        pairs = tuple(tuple(p) for p in lax.padtype_to_pads(x.shape[1:-1], span, strides_t, padding.upper()))
    cfg = _ConvConfig(strides_t, pairs, rhs_t, groups, precision)
    custom = impl == "custom" or (impl == "auto" and jax.default_backend() == "cpu")
    covered = (
        all(d == 1 for d in lhs_t)
        and any(jnp.dtype(x_dtype) == jnp.dtype(t) for t in _CUSTOM_DTYPES)
        and all(o >= 1 for o in _out_spatial(x.shape[1:-1], kernel.shape[:nd], cfg))
        and x.size > 0
    )
    if custom and covered:
        return _custom_conv(x, kernel, cfg)
    return _lax_conv(x, kernel, cfg, lhs_dilation=lhs_t)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: Padding,
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated``'s signature, routed to :func:`conv` for channels-last layouts.

    A hook for code that takes a convolution function (flax's ``Conv(conv_general_dilated=...)``, which
    :mod:`jaxreg.flax.conv` uses). Calls that :func:`conv` does not express (other layouts, batch groups,
    a ``preferred_element_type``, or extra keywords such as a non-``None`` ``out_sharding``) go to
    ``lax.conv_general_dilated`` unchanged.

    Example:
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> from jaxreg.conv import conv_general_dilated
      >>> x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
      >>> dn = lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC"))
      >>> conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=dn).shape
      (1, 3, 3, 4)
    """
    extra = {k: v for k, v in kwargs.items() if v is not None}
    nd = jnp.ndim(lhs) - 2
    channels_last = nd >= 1 and dimension_numbers is not None and (
        lax.conv_dimension_numbers(jnp.shape(lhs), jnp.shape(rhs), dimension_numbers) == _dimension_numbers(nd))
    if channels_last and batch_group_count == 1 and preferred_element_type is None and not extra:
        return conv(lhs, rhs, strides=tuple(window_strides), padding=padding, lhs_dilation=lhs_dilation,
                    rhs_dilation=rhs_dilation, feature_group_count=feature_group_count, precision=precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
        batch_group_count=batch_group_count, precision=precision, preferred_element_type=preferred_element_type,
        **extra)
