"""Drop-in flax ``Conv`` layers whose convolution is :func:`jaxreg.conv` (floor 4).

``Conv`` (linen) and ``NnxConv`` (nnx) are flax's own ``flax.linen.Conv`` and ``flax.nnx.Conv`` with one
thing changed: the convolution they call is :func:`jaxreg.conv.conv_general_dilated`, which sends
channels-last convolutions to :func:`jaxreg.conv` (a reverse-mode rule tuned for XLA:CPU on the CPU
backend, XLA's own convolution on GPU and TPU) and everything else to ``lax.conv_general_dilated``. So
they take flax's whole signature (``features``/``in_features, out_features``, ``kernel_size``, ``strides``,
``padding`` including ``'CIRCULAR'``, ``'REFLECT'`` and ``'CAUSAL'``, ``input_dilation``,
``kernel_dilation``, ``feature_group_count``, ``use_bias``, ``mask``, ``dtype``, ``param_dtype``,
``precision``, ``kernel_init``, ``bias_init``, nnx's ``rngs``), declare the same variables (``kernel``
``(*kernel_size, in_features // feature_group_count, features)``, ``bias`` ``(features,)``) under the same
auto-generated names (``Conv_0`` in linen), and load each other's checkpoints.

Differences from flax: on CPU the layers are not forward-mode differentiable (``jax.jvp`` of a call raises
``TypeError``; pass ``conv_general_dilated=jax.lax.conv_general_dilated`` to get flax's behaviour back), and
results equal flax's up to float rounding, not bit for bit (``tests/test_conv.py`` states the tolerances).
Input dilation (a transposed convolution) runs XLA's convolution, as on every backend. This module leans on
the ``conv_general_dilated`` hook of flax's convolution classes (in linen marked "deprecated, will be
removed"); the parity tests fail loudly if a flax release drops it.

``jaxreg.flax.nnx`` re-exports ``NnxConv`` under the name ``Conv``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
from flax import nnx

from jaxreg.conv import conv_general_dilated as _jaxreg_conv_general_dilated

__all__ = ["Conv", "NnxConv"]


class Conv(nn.Conv):
    """``flax.linen.Conv`` computing its convolution with :func:`jaxreg.conv` (see the module docstring).

    Every field is ``flax.linen.Conv``'s, with the same defaults, except ``conv_general_dilated``, which
    defaults to :func:`jaxreg.conv.conv_general_dilated`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.flax.conv import Conv
      >>> layer = Conv(features=4, kernel_size=(3, 3))
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, variables["params"])
      {'bias': (4,), 'kernel': (3, 3, 3, 4)}
      >>> layer.apply(variables, x).shape
      (2, 8, 8, 4)
    """

    conv_general_dilated: Callable[..., Any] | None = _jaxreg_conv_general_dilated


class NnxConv(nnx.Conv):
    """``flax.nnx.Conv`` computing its convolution with :func:`jaxreg.conv` (see the module docstring).

    Takes ``flax.nnx.Conv``'s arguments, with the same defaults, except ``conv_general_dilated``, which
    defaults to :func:`jaxreg.conv.conv_general_dilated`.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxreg.flax.conv import NnxConv
      >>> layer = NnxConv(3, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer(jnp.ones((2, 8, 8, 3))).shape
      ((3, 3, 3, 4), (2, 8, 8, 4))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: None | int | Sequence[int] = 1,
        *,
        conv_general_dilated: Callable[..., Any] = _jaxreg_conv_general_dilated,
        **kwargs: Any,
    ):
        super().__init__(in_features, out_features, kernel_size, strides,
                         conv_general_dilated=conv_general_dilated, **kwargs)
