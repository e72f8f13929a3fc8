"""``flax.nnx`` modules over jaxreg's noise and batch-norm functions, and ``nnx_apply`` (floor 4).

Thin shells, mirroring ``flax.nnx.Dropout`` and ``flax.nnx.BatchNorm`` (flax 0.12): the noise layers fork
the ``'dropout'`` stream of the ``nnx.Rngs`` given at construction (``rngs[rng_collection].fork()``) and draw
one key per call from it, unless the call passes ``rngs=`` (an ``nnx.Rngs``, an ``nnx.RngStream`` or a key);
``deterministic`` is an attribute that ``model.train()`` / ``model.eval()`` (``set_attributes``) and
``nnx.view`` toggle. ``BatchNorm`` holds ``nnx.Param`` ``scale``/``bias`` and ``nnx.BatchStat``
``mean``/``var`` like ``nnx.BatchNorm``, with ``use_running_average`` toggled the same way; it takes
``nnx.BatchNorm``'s whole signature and lives in ``_nnx_norm`` (re-exported here). The arithmetic is the
functional core's (``jaxreg.noise``, :func:`jaxreg.batch_norm`; the batch-norm options the core lacks run
nnx's own helpers); with ``mask_impl="prng"`` the dropout masks are ``nnx.Dropout``'s for the same ``Rngs``,
bit for bit, and a missing rng raises ``nnx.Dropout``'s ``ValueError`` message. ``jrn.Conv`` is
:class:`jaxreg.flax.conv.NnxConv`: ``flax.nnx.Conv`` whose convolution is :func:`jaxreg.conv`, same
arguments and variables.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxreg.flax import nnx as jrn
  >>> class MLP(nnx.Module):
  ...     def __init__(self, rngs: nnx.Rngs):
  ...         self.linear = nnx.Linear(3, 4, rngs=rngs)
  ...         self.bn = jrn.BatchNorm(4, rngs=rngs)
  ...         self.dropout = jrn.Dropout(0.5, rngs=rngs)
  ...     def __call__(self, x):
  ...         return self.dropout(self.bn(self.linear(x)))
  >>> model = MLP(nnx.Rngs(params=0, dropout=1))
  >>> model.eval()
  >>> model.dropout.deterministic, model.bn.use_running_average
  (True, True)
  >>> model(jnp.ones((2, 3))).shape
  (2, 4)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import jax
from flax import nnx

from jaxreg.drop_block import drop_block
from jaxreg import noise
from jaxreg._typing import ApplyFn, PyTree
from jaxreg._validate import is_concrete
from jaxreg.flax._nnx_norm import BatchNorm
from jaxreg.flax.conv import NnxConv as Conv

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
    "nnx_apply",
]

RngsArg = nnx.Rngs | nnx.RngStream | jax.Array | None

# nnx.Dropout's message, verbatim (its line break and indentation included) for Dropout, so that code
# matching on flax's text matches jaxreg's; the other layers put their own name in place of Dropout.
_NO_RNGS = (
    "`deterministic` is False, but no `rngs` argument was provided to {owner}\n"
    "          as either a __call__ argument or class attribute."
)


def _first_set(call_value: bool | None, attr_value: bool | None, name: str, owner: str) -> bool:
    """The call argument if given, else the attribute, as ``nnx``'s ``first_from``."""
    value = attr_value if call_value is None else call_value
    if value is None:
        raise ValueError(
            f"No `{name}` was given to {owner}: set it in the constructor, pass it to the call, or use "
            "model.train() / model.eval()."
        )
    return value


class _StochasticLayer(nnx.Module):
    """The call path of the noise layers: rngs and ``deterministic`` handled as ``nnx.Dropout`` does.

    A subclass declares its function (``_fn``), the attribute passed as its third argument (``_amount``) and
    the attributes passed by keyword (``_options``); its ``__init__`` sets them.
    """

    _fn: ClassVar[Callable[..., jax.Array]]  # a jaxreg.noise function, wrapped in staticmethod
    _amount: ClassVar[str] = "rate"
    _options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, deterministic: bool | None, rng_collection: str, rngs: nnx.Rngs | nnx.RngStream | None
    ) -> None:
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"rngs must be an nnx.Rngs, an nnx.RngStream or None, got {type(rngs).__name__}.")

    def __call__(
        self,
        x: jax.typing.ArrayLike,
        *,
        deterministic: bool | None = None,
        rngs: RngsArg = None,
        example_ids: jax.typing.ArrayLike | None = None,
    ) -> jax.Array:
        """Apply the layer's noise: its function with one key drawn from its stream (or from ``rngs``).

        Args:
          x: a floating array.
          deterministic: overrides the attribute when given.
          rngs: an ``nnx.Rngs``, ``nnx.RngStream`` or key to use instead of the layer's own stream.
          example_ids: optional ``(batch,)`` integer ids (see :func:`jaxreg.dropout`).

        Returns:
          An array with the shape and dtype of ``x``.

        Raises:
          ValueError: bad ``rate`` (``stddev``) or ``mask_impl``; no rngs when not deterministic (its
            message starts with ``nnx.Dropout``'s); ``deterministic`` ``None`` in both places.
          TypeError: ``rngs`` of another type.
        """
        owner = type(self).__name__
        amount = getattr(self, self._amount)
        options = {name: getattr(self, name) for name in self._options}
        deterministic = _first_set(deterministic, self.deterministic, "deterministic", owner)
        if deterministic or (is_concrete(amount) and float(amount) == 0.0):
            # Like nnx.Dropout, inference or a zero rate needs no rngs (the function still validates).
            return self._fn(None, x, amount, deterministic=True, example_ids=example_ids, **options)
        rngs = self.rngs if rngs is None else rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        elif isinstance(rngs, jax.Array):
            key = rngs
        elif rngs is None:
            raise ValueError(
                _NO_RNGS.format(owner=owner) + f" jaxreg: construct {owner} with rngs=nnx.Rngs(...) (stream "
                f"{self.rng_collection!r}), pass rngs= to the call, or set deterministic=True (model.eval())."
            )
        else:
            raise TypeError(
                f"rngs must be an nnx.Rngs, an nnx.RngStream or a jax.Array key, got {type(rngs).__name__}."
            )
        return self._fn(key, x, amount, example_ids=example_ids, **options)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Set ``deterministic`` for ``nnx.view``, as ``nnx.Dropout.set_view``.

        Args:
          deterministic: the new value; ``None`` leaves it unchanged.
        """
        if deterministic is not None:
            self.deterministic = deterministic


class Dropout(_StochasticLayer):
    """Inverted dropout, :func:`jaxreg.dropout` as an nnx module (a drop-in for ``nnx.Dropout``).

    Args:
      rate: drop probability in ``[0, 1)``.
      broadcast_dims: axes along which the mask is shared.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.
      mask_impl: ``"prng"`` (``nnx.Dropout``'s mask for the same rngs) or ``"hash"``.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> x = jnp.ones((2, 4))
      >>> y = jrn.Dropout(0.5, rngs=nnx.Rngs(dropout=0))(x)
      >>> sorted(set(y.ravel().tolist()))
      [0.0, 2.0]
      >>> bool(jnp.array_equal(y, nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))(x)))
      True
    """

    _fn = staticmethod(noise.dropout)
    _options = ("broadcast_dims", "mask_impl")

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        mask_impl: str = "prng",
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate
        self.broadcast_dims = tuple(broadcast_dims)
        self.mask_impl = mask_impl


class SpatialDropout(_StochasticLayer):
    """Drop whole feature maps, :func:`jaxreg.spatial_dropout` as an nnx module.

    Args:
      rate: drop probability in ``[0, 1)``.
      channel_axis: the channel axis of inputs of rank >= 3 (``-1`` for NHWC, ``1`` for NCHW).
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.
      mask_impl: ``"prng"`` or ``"hash"``.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> y = jrn.SpatialDropout(0.5, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 3, 4)))
      >>> bool(jnp.all(y == y[:, :1, :1, :]))
      True
    """

    _fn = staticmethod(noise.spatial_dropout)
    _options = ("channel_axis", "mask_impl")

    def __init__(
        self,
        rate: float,
        *,
        channel_axis: int = -1,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        mask_impl: str = "prng",
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate
        self.channel_axis = channel_axis
        self.mask_impl = mask_impl


class GaussianDropout(_StochasticLayer):
    """Multiplicative ``N(1, rate / (1 - rate))`` noise, :func:`jaxreg.gaussian_dropout` as an nnx module.

    Args:
      rate: in ``[0, 1)``.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> y = jrn.GaussianDropout(0.5, rngs=nnx.Rngs(0))(jnp.ones(10_000))
      >>> print(f"{float(y.mean()):.1f} {float(y.var()):.1f}")
      1.0 1.0
    """

    _fn = staticmethod(noise.gaussian_dropout)

    def __init__(
        self,
        rate: float,
        *,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate


class AlphaDropout(_StochasticLayer):
    """SELU-preserving dropout, :func:`jaxreg.alpha_dropout` as an nnx module.

    Args:
      rate: drop probability in ``[0, 1)``.
      broadcast_dims: axes along which the mask is shared.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.
      mask_impl: ``"prng"`` or ``"hash"``.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> x = jax.random.normal(jax.random.key(1), (20_000,))
      >>> y = jrn.AlphaDropout(0.2, rngs=nnx.Rngs(0))(x)
      >>> print(f"{float(y.mean()):.1f} {float(y.std()):.1f}")
      0.0 1.0
    """

    _fn = staticmethod(noise.alpha_dropout)
    _options = ("broadcast_dims", "mask_impl")

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        mask_impl: str = "prng",
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate
        self.broadcast_dims = tuple(broadcast_dims)
        self.mask_impl = mask_impl


class GaussianNoise(_StochasticLayer):
    """Additive ``N(0, stddev**2)`` noise, :func:`jaxreg.gaussian_noise` as an nnx module.

    Args:
      stddev: noise standard deviation, ``>= 0``.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> y = jrn.GaussianNoise(0.5, rngs=nnx.Rngs(0))(jnp.zeros(10_000))
      >>> print(f"{float(y.std()):.1f}")
      0.5
    """

    _fn = staticmethod(noise.gaussian_noise)
    _amount = "stddev"

    def __init__(
        self,
        stddev: float,
        *,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.stddev = stddev


class DropPath(_StochasticLayer):
    """Stochastic depth, :func:`jaxreg.drop_path` as an nnx module (timm ``DropPath``).

    Args:
      rate: drop probability in ``[0, 1)``.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.
      mask_impl: ``"prng"`` or ``"hash"``.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> y = jrn.DropPath(0.5, rngs=nnx.Rngs(0))(jnp.ones((6, 3)))
      >>> bool(jnp.all(y == y[:, :1]))
      True
    """

    _fn = staticmethod(noise.drop_path)
    _options = ("mask_impl",)

    def __init__(
        self,
        rate: float,
        *,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        mask_impl: str = "prng",
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate
        self.mask_impl = mask_impl


class DropBlock(_StochasticLayer):
    """DropBlock on NHWC feature maps, :func:`jaxreg.drop_block` as an nnx module (torchvision ``DropBlock2d``).

    Args:
      rate: the fraction of activations to drop, in ``[0, 1)``.
      block_size: the side of the dropped squares, odd and at most the feature map's height and width.
      deterministic: ``True`` returns the input; toggled by ``model.eval()`` / ``model.train()``.
      rng_collection: the ``Rngs`` stream to fork at construction.
      rngs: an ``nnx.Rngs`` or ``nnx.RngStream`` (forked), or ``None`` to pass keys at call time.

    Raises:
      TypeError: ``rngs`` of another type.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax import nnx as jrn
      >>> y = jrn.DropBlock(0.2, block_size=3, rngs=nnx.Rngs(0))(jnp.ones((8, 16, 16, 4)))
      >>> print(f"{float((y == 0).mean()):.1f}")
      0.2
    """

    _fn = staticmethod(drop_block)
    _options = ("block_size",)

    def __init__(
        self,
        rate: float,
        *,
        block_size: int = 7,
        deterministic: bool | None = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ) -> None:
        super().__init__(deterministic, rng_collection, rngs)
        self.rate = rate
        self.block_size = block_size


def nnx_apply(model: nnx.Module) -> tuple[ApplyFn, PyTree, PyTree]:
    """Adapt a ``flax.nnx`` module to the engine's model contract.

    The module is split into its ``nnx.Param`` leaves (the trained ``params``), its RNG streams and
    everything else (``model_state``: batch statistics and other non-trained variables). Values the module
    sows as ``nnx.Intermediate`` (``self.sow(nnx.Intermediate, "name", h)``) are popped after each call: they
    are the activities that :func:`jaxreg.make_train_step`'s ``activity_penalties`` see
    (``capture_activities=True`` returns them as a third element), never model state. The returned
    ``apply_fn`` merges them back, switches the module with ``train()``/``eval()``, reseeds every RNG stream
    from the step's ``key`` (so a step's noise depends only on the engine's key and step number, as with
    :func:`jaxreg.linen_apply`) and calls ``module(x)``.

    Args:
      model: an ``nnx.Module`` whose ``__call__(x)`` takes the batch; its dropout and batch-norm layers follow
        nnx's ``train()``/``eval()`` convention (``nnx.Dropout``, ``nnx.BatchNorm``, ``jaxreg.flax.nnx``).

    Returns:
      ``(apply_fn, params, model_state)``: pass ``params`` and ``model_state`` to
      :func:`jaxreg.create_train_state`, ``apply_fn`` to :func:`jaxreg.make_train_step` /
      :func:`jaxreg.make_eval_step`. Write trained values back with ``nnx.update(model, state.params,
      state.model_state)``.

    Raises:
      TypeError: if ``model`` is not an ``nnx.Module``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from flax import nnx
      >>> import jaxreg as jr
      >>> from jaxreg.flax import nnx as jrn
      >>> class Net(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.hidden, self.drop = nnx.Linear(4, 8, rngs=rngs), jrn.Dropout(0.5, rngs=rngs)
      ...         self.out = nnx.Linear(8, 3, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.out(self.drop(nnx.relu(self.hidden(x))))
      >>> apply_fn, params, model_state = jr.nnx_apply(Net(nnx.Rngs(0)))
      >>> tx = optax.sgd(0.1)
      >>> state = jr.create_train_state(params, tx, jax.random.key(1), model_state=model_state)
      >>> step = jr.make_train_step(apply_fn, optax.softmax_cross_entropy_with_integer_labels, tx)
      >>> state, metrics = step(state, jnp.ones((8, 4)), jnp.zeros(8, jnp.int32))
      >>> int(state.step)
      1
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got model = {model!r}.")
    graphdef, params, rng_state, model_state = nnx.split(model, nnx.Param, nnx.RngState, ...)
    is_variable = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
    # Streams are reseeded by tag: a layer built from nnx.Rngs(0) draws from "default", not "dropout".
    tags = sorted({v.tag for v in jax.tree.leaves(rng_state, is_leaf=is_variable) if getattr(v, "tag", None)})

    def apply_fn(params, model_state, x, *, key=None, training, capture_activities=False):
        # Variables rebuilt here, inside the innermost trace (jit, then grad): nnx refuses to mutate (reseed,
        # update batch statistics) variables that were made at another trace level.
        fresh = jax.tree.map(lambda leaf: leaf, (params, rng_state, model_state))
        module = nnx.merge(graphdef, *fresh)
        module.train() if training else module.eval()
        if key is not None and tags:
            nnx.reseed(module, **{tag: key for tag in tags})
        # What the call sows (self.sow(nnx.Intermediate, ...)) is the step's activities, never model state:
        # flax >= 0.12 collects it with nnx.capture (sowing outside it is deprecated), older flax in the module.
        if hasattr(nnx, "capture"):
            outputs, activities = nnx.capture(module, nnx.Intermediate)(x)
        else:  # pragma: no cover - flax < 0.12
            outputs = module(x)
            activities = nnx.pop(module, nnx.Intermediate)
        *_, new_model_state = nnx.split(module, nnx.Param, nnx.RngState, ...)
        if capture_activities:
            return outputs, new_model_state, activities
        return outputs, new_model_state

    return apply_fn, params, model_state
