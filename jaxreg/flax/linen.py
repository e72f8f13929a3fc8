"""``flax.linen`` modules over jaxreg's noise and batch-norm functions, and ``linen_apply`` (floor 4).

Each module is a thin shell: the noise layers draw their key with ``self.make_rng(self.rng_collection)``
(``'dropout'`` by default, as ``flax.linen.Dropout``) and call the function of the same name in
``jaxreg.noise``; ``BatchNorm`` keeps ``flax.linen.BatchNorm``'s variables (``params``: ``scale``, ``bias``;
``batch_stats``: ``mean``, ``var``) and calls :func:`jaxreg.batch_norm`. Fields and call signatures follow
their flax namesakes, so ``jrl.Dropout`` / ``jrl.BatchNorm`` can replace ``nn.Dropout`` / ``nn.BatchNorm`` in
an existing model: same auto-generated names, same variable tree, same dropout masks (with the default
``mask_impl="prng"``), same batch-norm numerics. ``jrl.Conv`` is :class:`jaxreg.flax.conv.Conv`:
``flax.linen.Conv`` whose convolution is :func:`jaxreg.conv` (a reverse-mode rule tuned for XLA:CPU, XLA's
own convolution on GPU and TPU), same fields and variables.

Differences from flax: a ``rate`` of 1 is rejected (``ValueError``) instead of returning zeros (inherited
from the functional core); ``BatchNorm`` takes flax's whole signature and adds ``ghost_batch_size`` (its
docstring lists the remaining differences).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import normalization as linen_normalization
from flax.typing import Dtype, Initializer

from jaxreg.drop_block import drop_block
from jaxreg.flax.conv import Conv
from jaxreg import noise
from jaxreg._typing import ApplyFn, KeyArray
from jaxreg._validate import is_concrete
from jaxreg.flax import _batch_norm_args as bn_args

__all__ = [
    "Dropout",
    "SpatialDropout",
    "GaussianDropout",
    "AlphaDropout",
    "GaussianNoise",
    "DropPath",
    "DropBlock",
    "BatchNorm",
    "Conv",
    "linen_apply",
]


class _Noise(nn.Module):
    """The call path of the noise modules: ``deterministic`` merged and the key drawn as ``flax.linen.Dropout``.

    No fields of its own (a subclass keeps flax's field order): a subclass declares its fields, its function
    (``_fn``), the field passed as its third argument (``_amount``) and the fields passed by keyword
    (``_options``).
    """

    _fn: ClassVar[Callable[..., jax.Array]]  # a jaxreg.noise function, wrapped in staticmethod
    _amount: ClassVar[str] = "rate"
    _options: ClassVar[tuple[str, ...]] = ()

    def __call__(
        self,
        x: jax.typing.ArrayLike,
        deterministic: bool | None = None,
        rng: KeyArray | None = None,
        *,
        example_ids: jax.typing.ArrayLike | None = None,
    ) -> jax.Array:
        """Apply the module's noise: its function with a key from ``make_rng`` (or ``rng``).

        Args:
          x: a floating array.
          deterministic: ``True`` returns ``x``; exactly one of this argument and the attribute must be
            set (flax's ``merge_param``).
          rng: a key to use instead of ``self.make_rng(self.rng_collection)``.
          example_ids: optional ``(batch,)`` integer ids (see :func:`jaxreg.dropout`).

        Returns:
          An array with the shape and dtype of ``x``.

        Raises:
          ValueError: bad ``rate`` (``stddev``) or ``mask_impl``; ``deterministic`` set twice or never.
          flax.errors.InvalidRngError: no rng stream named ``rng_collection`` was given to ``apply``.
        """
        amount = getattr(self, self._amount)
        options = {name: getattr(self, name) for name in self._options}
        if "broadcast_dims" in options:  # a Sequence field (a list is allowed): the function gets a tuple
            options["broadcast_dims"] = tuple(options["broadcast_dims"])
        deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
        if deterministic or (is_concrete(amount) and float(amount) == 0.0):
            # Like flax.linen.Dropout, inference or a zero rate draws no key (the function still validates).
            return self._fn(None, x, amount, deterministic=True, example_ids=example_ids, **options)
        if rng is None:
            rng = self.make_rng(self.rng_collection)
        return self._fn(rng, x, amount, example_ids=example_ids, **options)


class Dropout(_Noise):
    """Inverted dropout, :func:`jaxreg.dropout` as a linen module (a drop-in for ``flax.linen.Dropout``).

    With the default ``mask_impl="prng"`` the mask is ``flax.linen.Dropout``'s for the same ``'dropout'``
    rng, bit for bit; ``"hash"`` is faster (see ``jaxreg.noise``).

    Attributes:
      rate: drop probability in ``[0, 1)``.
      broadcast_dims: axes along which the mask is shared.
      deterministic: ``True`` returns the input; may instead be given to ``__call__`` (``merge_param``).
      rng_collection: the rng stream the key is drawn from.
      mask_impl: ``"prng"`` or ``"hash"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from jaxreg.flax import linen as jrl
      >>> x = jnp.ones((2, 4))
      >>> layer = jrl.Dropout(0.5)
      >>> variables = layer.init(jax.random.key(0), x, deterministic=True)
      >>> y = layer.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
      >>> print(y)
      [[0. 0. 0. 0.]
       [2. 0. 0. 2.]]
      >>> y_flax = nn.Dropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
      >>> bool(jnp.array_equal(y, y_flax))
      True
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    mask_impl: str = "prng"

    _fn = staticmethod(noise.dropout)
    _options = ("broadcast_dims", "mask_impl")


class SpatialDropout(_Noise):
    """Drop whole feature maps, :func:`jaxreg.spatial_dropout` as a linen module (Keras ``SpatialDropout2D``).

    Attributes:
      rate: drop probability in ``[0, 1)``.
      channel_axis: the channel axis of inputs of rank >= 3 (``-1`` for NHWC, ``1`` for NCHW).
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.
      mask_impl: ``"prng"`` or ``"hash"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> x = jnp.ones((2, 3, 3, 4))
      >>> y = jrl.SpatialDropout(0.5).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> bool(jnp.all(y == y[:, :1, :1, :]))  # one decision per (example, channel)
      True
    """

    rate: float
    channel_axis: int = -1
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    mask_impl: str = "prng"

    _fn = staticmethod(noise.spatial_dropout)
    _options = ("channel_axis", "mask_impl")


class GaussianDropout(_Noise):
    """Multiplicative ``N(1, rate / (1 - rate))`` noise, :func:`jaxreg.gaussian_dropout` as a linen module.

    Attributes:
      rate: in ``[0, 1)``.
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> y = jrl.GaussianDropout(0.5).apply(
      ...     {}, jnp.ones(10_000), deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> print(f"{float(y.mean()):.1f} {float(y.var()):.1f}")
      1.0 1.0
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    _fn = staticmethod(noise.gaussian_dropout)


class AlphaDropout(_Noise):
    """SELU-preserving dropout, :func:`jaxreg.alpha_dropout` as a linen module (Keras ``AlphaDropout``).

    Attributes:
      rate: drop probability in ``[0, 1)``.
      broadcast_dims: axes along which the mask is shared.
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.
      mask_impl: ``"prng"`` or ``"hash"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> x = jax.random.normal(jax.random.key(1), (20_000,))
      >>> y = jrl.AlphaDropout(0.2).apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> print(f"{float(y.mean()):.1f} {float(y.std()):.1f}")  # zero mean, unit variance preserved
      0.0 1.0
    """

    rate: float
    broadcast_dims: Sequence[int] = ()
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    mask_impl: str = "prng"

    _fn = staticmethod(noise.alpha_dropout)
    _options = ("broadcast_dims", "mask_impl")


class GaussianNoise(_Noise):
    """Additive ``N(0, stddev**2)`` noise, :func:`jaxreg.gaussian_noise` as a linen module (Keras ``GaussianNoise``).

    Attributes:
      stddev: noise standard deviation, ``>= 0``.
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> y = jrl.GaussianNoise(0.5).apply(
      ...     {}, jnp.zeros(10_000), deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> print(f"{float(y.std()):.1f}")
      0.5
    """

    stddev: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    _fn = staticmethod(noise.gaussian_noise)
    _amount = "stddev"


class DropPath(_Noise):
    """Stochastic depth, :func:`jaxreg.drop_path` as a linen module (timm ``DropPath``).

    Drops whole examples (axis 0) of a residual branch: ``x + DropPath(rate)(branch(x), deterministic=...)``.

    Attributes:
      rate: drop probability in ``[0, 1)``.
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.
      mask_impl: ``"prng"`` or ``"hash"``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> y = jrl.DropPath(0.5).apply({}, jnp.ones((6, 3)), deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> bool(jnp.all(y == y[:, :1]))  # one decision per example
      True
    """

    rate: float
    deterministic: bool | None = None
    rng_collection: str = "dropout"
    mask_impl: str = "prng"

    _fn = staticmethod(noise.drop_path)
    _options = ("mask_impl",)


class DropBlock(_Noise):
    """DropBlock on NHWC feature maps, :func:`jaxreg.drop_block` as a linen module (torchvision ``DropBlock2d``).

    Attributes:
      rate: the fraction of activations to drop, in ``[0, 1)``.
      block_size: the side of the dropped squares, odd and at most the feature map's height and width.
      deterministic: ``True`` returns the input; may instead be given to ``__call__``.
      rng_collection: the rng stream the key is drawn from.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> layer = jrl.DropBlock(0.2, block_size=3)
      >>> y = layer.apply({}, jnp.ones((8, 16, 16, 4)), deterministic=False, rngs={"dropout": jax.random.key(0)})
      >>> print(f"{float((y == 0).mean()):.1f}")
      0.2
    """

    rate: float
    block_size: int = 7
    deterministic: bool | None = None
    rng_collection: str = "dropout"

    _fn = staticmethod(drop_block)
    _options = ("block_size",)


class BatchNorm(nn.Module):
    """Batch normalization, :func:`jaxreg.batch_norm` as a drop-in for ``flax.linen.BatchNorm``.

    Takes flax's whole signature (fields in flax's order, ``__call__(x, use_running_average, *, mask)``) with
    flax's semantics: same variables (``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``,
    shaped like the feature axes, float32 unless ``force_float32_reductions=False``), same defaults
    (``momentum=0.99``, ``epsilon=1e-5``), same output dtype (``dtype``, else the promotion of the input and
    the parameters), so variables move between the two modules unchanged. As in flax, the running statistics
    are not updated while initializing, and ``axis_name`` is ignored then (the named axis need not exist at
    init). In training mode (``use_running_average=False``) ``apply`` needs ``mutable=["batch_stats"]``.

    Most calls run the functional core. A training call with ``mask``, ``use_fast_variance=False``,
    ``axis_index_groups`` or a statistics ``dtype`` wider than the input's, and any call with a complex input
    or ``force_float32_reductions=False``, runs flax's own ``_compute_stats``/``_normalize`` instead (the
    core has no such options), so it is flax's computation exactly.

    Differences from ``flax.linen.BatchNorm``:

    * ``ghost_batch_size`` (a jaxreg addition, appended after flax's fields); it cannot be combined with the
      options that run flax's helpers (``ValueError`` naming both), nor with ``0`` among the feature axes.
    * ``momentum`` outside ``[0, 1]``, ``epsilon <= 0`` and an out-of-range ``axis`` raise ``ValueError``
      naming the argument (flax accepts the first two and fails later on the third).
    * On the core path, training-mode gradients come from jaxreg's hand-written backward pass: equal to
      flax's up to float rounding (not bit for bit), and pure forward-mode differentiation (``jax.jvp``,
      ``jax.jacfwd``) of a training-mode call raises ``TypeError`` (reverse mode and forward-over-reverse
      work).
    * Non-adjacent feature axes (e.g. ``axis=(0, 2)``) are transposed next to each other and back around
      the core (two transposes flax does not do); adjacent ones are a free reshape.
    * Dtypes follow flax's (standard) promotion even under ``jax_numpy_dtype_promotion="strict"``, where
      flax's own module raises for a bfloat16 input with float32 parameters.

    Attributes:
      use_running_average: ``True`` normalizes with the running statistics; may instead be given to
        ``__call__`` (``merge_param``).
      axis: the feature axis, or a tuple of feature axes (one ``scale``/``bias``/statistic per position).
      momentum: decay of the running averages, in ``[0, 1]``.
      epsilon: added to the variance, ``> 0``.
      dtype: the output dtype (and minimal statistics precision); ``None`` infers it from the input and
        parameters.
      param_dtype: dtype of ``scale`` and ``bias``.
      use_bias: learn a bias.
      use_scale: learn a scale.
      bias_init: initializer of ``bias``.
      scale_init: initializer of ``scale``.
      axis_name: mapped axis to average the batch statistics over (``vmap``, ``shard_map``, ``pmap``).
      axis_index_groups: groups of indices of ``axis_name`` to average within (``pmap``), as
        ``jax.lax.pmean``.
      use_fast_variance: ``E[|x|^2] - |E[x]|^2`` (flax's default) rather than ``E[|x - E[x]|^2]``.
      force_float32_reductions: ``False`` keeps statistics and parameters in the input's and
        ``param_dtype`` precision, as flax.
      ghost_batch_size: normalize ghost batches of this many examples (see :func:`jaxreg.batch_norm`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax import linen as jrl
      >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
      >>> bn = jrl.BatchNorm(momentum=0.9)
      >>> variables = bn.init(jax.random.key(0), x, use_running_average=False)
      >>> jax.tree.map(jnp.shape, variables)
      {'batch_stats': {'mean': (2,), 'var': (2,)}, 'params': {'bias': (2,), 'scale': (2,)}}
      >>> y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
      >>> print(jnp.round(y, 3))
      [[-1. -1.]
       [ 1.  1.]]
      >>> print(updates["batch_stats"]["mean"])  # 0.9 * 0 + 0.1 * batch mean
      [0.2 2. ]
      >>> y_eval = bn.apply({**variables, **updates}, x, use_running_average=True)
      >>> y_eval.shape
      (2, 2)
    """

    use_running_average: bool | None = None
    axis: int | Sequence[int] = -1
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    use_bias: bool = True
    use_scale: bool = True
    bias_init: Initializer = nn.initializers.zeros
    scale_init: Initializer = nn.initializers.ones
    axis_name: str | None = None
    axis_index_groups: Any = None
    use_fast_variance: bool = True
    force_float32_reductions: bool = True
    ghost_batch_size: int | None = None

    @nn.compact
    def __call__(
        self,
        x: jax.typing.ArrayLike,
        use_running_average: bool | None = None,
        *,
        mask: jax.typing.ArrayLike | None = None,
    ) -> jax.Array:
        """Normalize ``x`` and, in training mode outside ``init``, update ``batch_stats``.

        Args:
          x: an array of rank >= 1 (real, integer or complex).
          use_running_average: exactly one of this and the attribute must be set.
          mask: booleans broadcastable to ``x``: the positions the batch statistics are taken over
            (training mode only, as flax).

        Returns:
          An array with the shape of ``x`` and flax's output dtype.

        Raises:
          ValueError, TypeError: as :func:`jaxreg.batch_norm`; ``use_running_average`` set twice or never;
            ``ghost_batch_size`` with an option run by flax's helpers.
          NotImplementedError: an option that needs a flax helper the installed flax lacks.
        """
        use_running_average = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        x = jnp.asarray(x)
        axes = bn_args.feature_axes(self.axis, x.ndim)
        bn_args.check_hyperparameters(self.momentum, self.epsilon)
        feature_shape = tuple(x.shape[a] for a in axes)
        stats_dtype = jnp.float32 if self.force_float32_reductions else self.param_dtype
        # Created in flax's order (statistics, then scale, then bias) so that custom initializers get the
        # same keys.
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, stats_dtype), feature_shape)
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, stats_dtype), feature_shape)
        training = not use_running_average
        update = training and not self.is_initializing()
        axis_name = None if self.is_initializing() else self.axis_name
        reasons = bn_args.flax_path_reasons(
            x.dtype,
            training=training,
            mask=mask,
            use_fast_variance=self.use_fast_variance,
            axis_index_groups=self.axis_index_groups,
            dtype=self.dtype,
            force_float32_reductions=self.force_float32_reductions,
        )
        if reasons:
            bn_args.check_no_ghost_batches(self.ghost_batch_size, reasons)
            return self._flax_batch_norm(x, mask, ra_mean, ra_var, training, update, axis_name, axes, reasons)
        scale = self.param("scale", self.scale_init, feature_shape, self.param_dtype) if self.use_scale else None
        bias = self.param("bias", self.bias_init, feature_shape, self.param_dtype) if self.use_bias else None
        y, mean, var = bn_args.core_batch_norm(
            x,
            scale,
            bias,
            ra_mean.value,
            ra_var.value,
            training=training,
            momentum=self.momentum,
            epsilon=self.epsilon,
            axes=axes,
            axis_name=axis_name,
            ghost_batch_size=self.ghost_batch_size,
        )
        if update:
            ra_mean.value, ra_var.value = mean, var
        return y.astype(bn_args.output_dtype(x, scale, bias, self.dtype))

    def _flax_batch_norm(self, x, mask, ra_mean, ra_var, training, update, axis_name, axes, reasons):
        """The calls the core cannot compute: flax's ``BatchNorm.__call__`` body, with flax's helpers."""
        compute_stats = bn_args.flax_helper(linen_normalization, "_compute_stats", reasons)
        normalize = bn_args.flax_helper(linen_normalization, "_normalize", reasons)
        reduction_axes = tuple(a for a in range(x.ndim) if a not in axes)
        with bn_args.standard_promotion():
            if training:
                mean, var = compute_stats(
                    x,
                    reduction_axes,
                    dtype=self.dtype,
                    axis_name=axis_name,
                    axis_index_groups=self.axis_index_groups,
                    use_fast_variance=self.use_fast_variance,
                    mask=mask,
                    force_float32_reductions=self.force_float32_reductions,
                )
                if update:
                    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
                    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
            else:
                mean, var = ra_mean.value, ra_var.value
                if not self.force_float32_reductions:
                    mean, var = jnp.asarray(mean, self.param_dtype), jnp.asarray(var, self.param_dtype)
            return normalize(
                self, x, mean, var, reduction_axes, axes, self.dtype, self.param_dtype, self.epsilon,
                self.use_bias, self.use_scale, self.bias_init, self.scale_init, self.force_float32_reductions,
            )


def linen_apply(
    module: nn.Module,
    *,
    dropout_rng_name: str = "dropout",
    train_arg: str | None = "train",
    call_args: Mapping[str, Any] | None = None,
    activity_collection: str = "intermediates",
) -> ApplyFn:
    """Adapt a ``flax.linen`` module to the ``apply_fn(params, model_state, x, *, key, training)`` contract.

    The adapter calls ``module.apply({"params": params, **model_state}, x, train=training,
    rngs={dropout_rng_name: key}, mutable=list(model_state))`` when training (``rngs`` only when ``key`` is
    not None, ``mutable`` only when ``model_state`` is non-empty) and without ``mutable`` in evaluation, and
    returns ``(outputs, {**model_state, **updated_collections})``.

    Args:
      module: a ``flax.linen.Module``.
      dropout_rng_name: the rng stream name the module's ``nn.Dropout`` layers use.
      train_arg: the keyword of ``__call__`` that switches training mode, or None if it has none.
      call_args: extra keyword arguments of ``__call__``, passed on every call; they may be traced arrays,
        e.g. ``{"rate": h["dropout"]}`` for a model whose dropout rate is swept under ``jax.vmap``.
      activity_collection: the collection the module ``sow``s activities into (flax's default
        ``"intermediates"``): with ``apply_fn(..., capture_activities=True)`` (what
        :func:`jaxreg.make_train_step` calls when given ``activity_penalties``) it is made mutable and its
        values are returned as a third element, ``(outputs, model_state, activities)``.

    Returns:
      An ``apply_fn`` for :func:`jaxreg.make_train_step` / :func:`jaxreg.make_eval_step`.

    Raises:
      TypeError: if ``module`` has no ``apply`` method.
      ValueError: if ``call_args`` holds ``train_arg``.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> import jaxreg as jr
      >>> class Net(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x, train: bool):
      ...         return nn.BatchNorm(use_running_average=not train)(nn.Dense(2)(x))
      >>> variables = Net().init(jax.random.key(0), jnp.ones((4, 3)), train=False)
      >>> apply_fn = jr.linen_apply(Net())
      >>> out, ms = apply_fn(variables["params"], {"batch_stats": variables["batch_stats"]}, jnp.ones((4, 3)),
      ...                    key=None, training=True)
      >>> out.shape, sorted(ms)
      ((4, 2), ['batch_stats'])
    """
    if not callable(getattr(module, "apply", None)):
        raise TypeError(f"module must be a flax.linen.Module, got module = {module!r}.")
    if train_arg is not None and train_arg in (call_args or {}):
        raise ValueError(f"call_args must not hold {train_arg!r}: the adapter sets it from `training`.")

    def apply_fn(params, model_state, x, *, key=None, training, capture_activities=False):
        kwargs = dict(call_args or {})
        if train_arg is not None:
            kwargs[train_arg] = training
        rngs = {dropout_rng_name: key} if key is not None else None
        variables = {"params": params, **model_state}
        if capture_activities:
            mutable = [*(model_state if training else ()), activity_collection]
            outputs, updates = module.apply(variables, x, rngs=rngs, mutable=mutable, **kwargs)
            updates = dict(updates)
            activities = updates.pop(activity_collection, {})
            return outputs, {**model_state, **updates}, activities
        if training and model_state:
            outputs, updates = module.apply(variables, x, rngs=rngs, mutable=list(model_state), **kwargs)
            return outputs, {**model_state, **updates}
        return module.apply(variables, x, rngs=rngs, **kwargs), model_state

    return apply_fn
