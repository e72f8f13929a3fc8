"""The model zoo of the experiments: an MLP, a regularized CNN and a small transformer classifier (floor 7).

Every model is a ``flax.linen`` module whose ``__call__(x, train)`` returns logits ``(batch, num_outputs)``;
:func:`jaxreg.linen_apply` turns it into the ``apply_fn(params, model_state, x, *, key, training)`` of the
training engine. Their regularizers are jaxreg's functional core called inside the module:

* dropout variants are :func:`jaxreg.dropout`, :func:`jaxreg.gaussian_dropout` and
  :func:`jaxreg.spatial_dropout`, keyed by ``self.make_rng("dropout")`` (so ``linen_apply``'s
  ``rngs={"dropout": key}`` drives them);
* batch norm is :func:`jaxreg.batch_norm`, kept in linen's layout (``params/<layer>/{scale,bias}`` and
  ``batch_stats/<layer>/{mean,var}``), so the running statistics are the ``model_state`` the step threads.

Both through the thin linen adapters of :mod:`jaxreg.flax.linen` (``jrl.Dropout``, ``jrl.GaussianDropout``,
``jrl.SpatialDropout``, ``jrl.BatchNorm``). The CNN's convolutions are :class:`jaxreg.flax.conv.Conv`
(``flax.linen.Conv`` over :func:`jaxreg.conv`: same variables, a reverse-mode rule chosen for XLA:CPU) and
its max pool a reshape-and-max with an elementwise gradient (see :class:`RegularizedCNN`).

Batch norm uses ``momentum=0.9`` rather than flax's 0.99: with a few hundred training examples an epoch is a
dozen steps, and 0.99 would leave the running statistics lagging behind the weights for many epochs.

A rate of 0 (or ``batch_norm=False``) removes the layer from the program entirely, so an unregularized
baseline is exactly the plain network.

Inputs: float images NHWC, float feature vectors ``(batch, features)``, or int32 token ids ``(batch,
length)`` (give ``vocab_size``; 0 is padding). :func:`build_model` picks the model for a dataset from its
:class:`jaxreg.experiments.data.DatasetInfo`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxreg import noise
from jaxreg.norm import BatchNormState, batch_renorm
from jaxreg._validate import check_choice, check_in_range, check_positive_int
from jaxreg.flax import linen as jrl
from jaxreg.flax.conv import Conv

__all__ = ["MODELS", "MLP", "BatchRenorm", "DropConnectDense", "SweepMLP", "RegularizedCNN", "TransformerClassifier",
           "build_model", "sinusoidal_positions"]

MODELS = ("mlp", "cnn", "transformer")
_DROPOUT_KINDS = ("dropout", "gaussian")


def _check_rate(name: str, rate: float) -> None:
    check_in_range(name, rate, 0.0, 1.0, high_inclusive=False)


def _pool_windows(x: jax.Array, window: int) -> jax.Array:
    """``(n, h // window, window, w // window, window, c)``: the pooling windows (a remainder is dropped)."""
    n, h, w, c = x.shape
    x = x[:, : h // window * window, : w // window * window, :]
    return x.reshape(n, h // window, window, w // window, window, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jax.Array, window: int) -> jax.Array:
    """``nn.max_pool(x, (window, window), strides=(window, window))`` (VALID), with an elementwise gradient.

    The same values and the same gradient as flax's: each window's gradient goes to its first maximum in
    row-major order, as XLA's ``select-and-scatter`` does (``tests/test_benchmarks.py`` checks both, ties
    included). Only the formulation differs: the forward pass is a reshape and a max, the backward pass
    ``window**2`` fused comparisons. XLA:CPU computes ``nn.max_pool``'s gradient as a ``select-and-scatter``
    over a variadic ``reduce-window`` that carries argmax indices (four int32 ``iota`` arrays of the input's
    size), 94 ms against 14 ms on the experiments' 64x32x32x64 activations (benchmarks/NOTES.md).
    """
    return jnp.max(_pool_windows(x, window), axis=(2, 4))


def _max_pool_fwd(x, window):
    y = jnp.max(_pool_windows(x, window), axis=(2, 4))
    return y, (x, y)


def _max_pool_bwd(window, residuals, g):
    x, y = residuals
    windows = _pool_windows(x, window)
    taken = jnp.zeros(y.shape, bool)
    rows = []
    for i in range(window):
        cols = []
        for j in range(window):
            hit = (windows[:, :, i, :, j, :] == y) & ~taken
            taken = taken | hit
            cols.append(jnp.where(hit, g, jnp.zeros((), g.dtype)))
        rows.append(jnp.stack(cols, axis=3))  # (n, h', w', window, c)
    dx = jnp.stack(rows, axis=2)  # (n, h', window, w', window, c)
    n, h, w, c = x.shape
    dx = dx.reshape(n, h // window * window, w // window * window, c)
    return (jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _unit_dropout(x: jax.Array, rate: float, kind: str, train: bool) -> jax.Array:
    """Bernoulli or Gaussian (multiplicative N(1, rate / (1 - rate))) dropout; absent at rate 0."""
    if rate == 0.0:
        return x
    layer = jrl.Dropout(rate) if kind == "dropout" else jrl.GaussianDropout(rate)
    return layer(x, deterministic=not train)


class BatchRenorm(nn.Module):
    """Batch renormalization (:func:`jaxreg.batch_renorm`) over the last axis, in flax's BatchNorm layout.

    Variables as :class:`jaxreg.flax.linen.BatchNorm` (``params``: ``scale``, ``bias``; ``batch_stats``:
    ``mean``, ``var``; not updated while initializing), so evaluation mode is that layer's; ``r_max=1,
    d_max=0`` is plain batch norm. Attributes: ``momentum``, ``r_max`` (largest correction of the batch's
    standard deviation), ``d_max`` (of its mean, in running standard deviations), ``epsilon``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import BatchRenorm
      >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
      >>> layer = BatchRenorm(r_max=1.0, d_max=0.0)
      >>> variables = layer.init(jax.random.key(0), x, use_running_average=False)
      >>> y, updates = layer.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
      >>> print(jnp.round(y[:, 0], 3))  # r_max=1, d_max=0: plain batch norm
      [-1.  1.]
    """

    momentum: float = 0.9
    r_max: float = 3.0
    d_max: float = 5.0
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
        """``x`` renormalized over its batch in training mode, normalized by the running statistics otherwise."""
        features = x.shape[-1]
        params = {"scale": self.param("scale", nn.initializers.ones, (features,), jnp.float32),
                  "bias": self.param("bias", nn.initializers.zeros, (features,), jnp.float32)}
        mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        y, state = batch_renorm(x, params, BatchNormState(mean.value, var.value), training=not use_running_average,
                                momentum=self.momentum, epsilon=self.epsilon, r_max=self.r_max, d_max=self.d_max)
        if not use_running_average and not self.is_initializing():
            mean.value, var.value = state.mean, state.var
        return y


class DropConnectDense(nn.Module):
    """``nn.Dense`` whose kernel goes through :func:`jaxreg.drop_connect` in training mode (Wan et al. 2013).

    ``nn.Dense``'s variables and initializers (named like the ``Dense`` it replaces, it starts from the same
    weights); one mask per call, the bias not dropped. Attributes: ``features``, ``rate`` (in ``[0, 1)``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import DropConnectDense
      >>> layer = DropConnectDense(4, rate=0.5)
      >>> x = jnp.ones((2, 3))
      >>> variables = layer.init(jax.random.key(0), x, train=False)
      >>> bool(jnp.allclose(layer.apply(variables, x, train=False), x @ variables["params"]["kernel"]))
      True
    """

    features: int
    rate: float = 0.5
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """``x @ drop_connect(kernel) + bias`` when ``train``, ``x @ kernel + bias`` otherwise."""
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features), jnp.float32)
        if train and self.rate > 0.0:
            kernel = noise.drop_connect(self.make_rng("dropout"), kernel, self.rate)
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


class MLP(nn.Module):
    """A multilayer perceptron: ``[Dense -> (BatchNorm) -> ReLU -> (dropout)] * len(hidden_sizes) -> Dense``.

    Each hidden activation (after the ReLU) is sown into ``"intermediates"`` as ``activation_{i}`` (a no-op
    unless that collection is mutable), for activity penalties (``make_train_step(activity_penalties=...)``).

    Attributes:
      num_outputs: width of the last layer (number of classes).
      hidden_sizes: width of each hidden layer; wide layers on a small training set overfit visibly.
      dropout_rate: drop probability after each hidden activation, in ``[0, 1)``; 0 for none.
      dropout_kind: ``"dropout"`` (Bernoulli, inverted) or ``"gaussian"`` (multiplicative Gaussian noise
        of the same variance, Srivastava et al. 2014).
      input_dropout_rate: drop probability on the (flattened) inputs, in ``[0, 1)``.
      batch_norm: batch-normalize each hidden pre-activation.
      batch_norm_momentum: momentum of the running statistics.
      vocab_size: for int32 token inputs: tokens are one-hot encoded (``vocab_size`` classes) before
        flattening. ``None`` for float inputs.
      batch_renorm: with ``batch_norm``, normalize with :class:`BatchRenorm` (same variables) instead.
      drop_connect_rate: :class:`DropConnectDense` rate of the hidden layers' kernels, in ``[0, 1)``; the
        layers keep the names and initial weights of the plain MLP's ``Dense`` layers.

    Shapes: ``x`` is ``(batch, ...)``, flattened to ``(batch, features)``; returns float32 logits
    ``(batch, num_outputs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import MLP
      >>> model = MLP(num_outputs=10, hidden_sizes=(32,), dropout_rate=0.5, batch_norm=True)
      >>> x = jnp.ones((4, 8, 8, 1))
      >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))  # shapes only
      >>> jax.tree.map(lambda a: a.shape, variables["params"])
      {'BatchNorm_0': {'bias': (32,), 'scale': (32,)}, 'Dense_0': {'kernel': (64, 32)},
       'Dense_1': {'bias': (10,), 'kernel': (32, 10)}}
      >>> logits, updates = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"],
      ...                                                       rngs={"dropout": jax.random.key(1)}), variables)
      >>> logits.shape, sorted(updates)
      ((4, 10), ['batch_stats'])
    """

    num_outputs: int
    hidden_sizes: Sequence[int] = (512, 512)
    dropout_rate: float = 0.0
    dropout_kind: str = "dropout"
    input_dropout_rate: float = 0.0
    batch_norm: bool = False
    batch_norm_momentum: float = 0.9
    vocab_size: int | None = None
    batch_renorm: bool = False
    drop_connect_rate: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int("num_outputs", self.num_outputs)
        for size in self.hidden_sizes:
            check_positive_int("hidden_sizes", size)
        _check_rate("dropout_rate", self.dropout_rate)
        _check_rate("drop_connect_rate", self.drop_connect_rate)
        if self.batch_renorm and not self.batch_norm:
            raise ValueError("batch_renorm replaces the batch-norm layers: it needs batch_norm=True.")
        _check_rate("input_dropout_rate", self.input_dropout_rate)
        check_choice("dropout_kind", self.dropout_kind, _DROPOUT_KINDS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits of shape ``(batch, num_outputs)``; ``train`` turns on dropout and batch statistics."""
        if self.vocab_size is not None:
            x = jax.nn.one_hot(x, self.vocab_size, dtype=jnp.float32)
        x = jnp.reshape(x, (x.shape[0], -1))
        x = _unit_dropout(x, self.input_dropout_rate, "dropout", train)
        for i, size in enumerate(self.hidden_sizes):
            if self.drop_connect_rate > 0.0:
                x = DropConnectDense(size, self.drop_connect_rate, use_bias=not self.batch_norm,
                                     name=f"Dense_{i}")(x, train)
            else:
                x = nn.Dense(size, use_bias=not self.batch_norm)(x)
            if self.batch_norm:  # batch renorm keeps batch norm's variables and names
                norm = BatchRenorm if self.batch_renorm else jrl.BatchNorm
                x = norm(momentum=self.batch_norm_momentum, name=f"BatchNorm_{i}")(x, use_running_average=not train)
            x = nn.relu(x)
            # Recorded only when the caller makes "intermediates" mutable (the engine's activity_penalties).
            self.sow("intermediates", f"activation_{i}", x)
            x = _unit_dropout(x, self.dropout_rate, self.dropout_kind, train)
        # Named: with DropConnect the auto-named Dense counter skipped the hidden layers.
        return nn.Dense(self.num_outputs, name=f"Dense_{len(self.hidden_sizes)}")(x)


class RegularizedCNN(nn.Module):
    """``conv-BN-ReLU-spatial dropout-conv-BN-ReLU-maxpool``, then ``dense-BN-ReLU-dropout-dense``.

    With ``drop_block_rate > 0``, :class:`jaxreg.flax.linen.DropBlock` follows each convolution block (after
    the ReLU, before the spatial dropout and the pool), where the maps still have the input's size.

    The regularized small-image CNN of the experiments; each regularizer can be switched off (``batch_norm=
    False``, rates 0) to get the plain network. Convolutions are 3x3 with "SAME" padding; the max pool is
    2x2 (so 8x8 digits become 4x4 feature maps, 32x32 CIFAR images 16x16). The layers are flax's, with
    flax's variable names (``Conv_0``, ``BatchNorm_0``, ...), two of them computed differently for speed on
    CPU: the convolutions are :class:`jaxreg.flax.conv.Conv` and the max pool a reshape-and-max whose
    gradient is elementwise (``_max_pool``); the network is the same function as with ``nn.Conv`` and
    ``nn.max_pool``, with the same gradients up to float rounding. Both have hand-written reverse-mode rules,
    so (as with :func:`jaxreg.batch_norm`) pure forward-mode differentiation (``jax.jvp``) of a call raises.

    Attributes:
      num_outputs: number of classes.
      features: output channels of the two convolutions.
      dense_size: width of the hidden dense layer.
      batch_norm: batch-normalize after each convolution and the hidden dense layer.
      spatial_dropout_rate: :func:`jaxreg.spatial_dropout` rate after the first block (whole channels).
      dropout_rate: dropout rate after the hidden dense layer.
      dropout_kind: ``"dropout"`` or ``"gaussian"`` for that dense dropout.
      batch_norm_momentum: momentum of the running statistics.
      drop_block_rate: :func:`jaxreg.drop_block` rate after each convolution block, in ``[0, 1)``; 0 for none.
      drop_block_size: side of the dropped squares, odd and at most the image's height and width; the
        default 3 suits 8x8 digits (Ghiasi et al. use 7 on ImageNet's 14x14 and 7x7 maps).

    Shapes: ``x`` is NHWC float ``(batch, height, width, channels)``; returns ``(batch, num_outputs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import RegularizedCNN
      >>> model = RegularizedCNN(num_outputs=10, features=(4, 8), dense_size=16)
      >>> x = jnp.ones((2, 8, 8, 1))
      >>> logits, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
      >>> logits.shape, variables["params"]["Dense_0"]["kernel"].shape   # 8x8 pooled to 4x4, 8 channels
      ((2, 10), (128, 16))
      >>> sorted(variables["params"])
      ['BatchNorm_0', 'BatchNorm_1', 'BatchNorm_2', 'Conv_0', 'Conv_1', 'Dense_0', 'Dense_1']
    """

    num_outputs: int
    features: Sequence[int] = (32, 64)
    dense_size: int = 128
    batch_norm: bool = True
    spatial_dropout_rate: float = 0.1
    dropout_rate: float = 0.5
    dropout_kind: str = "dropout"
    batch_norm_momentum: float = 0.9
    drop_block_rate: float = 0.0
    drop_block_size: int = 3
    # The convolution layer and the pooling function (not fields: benchmarks/conv.py swaps in nn.Conv and
    # nn.max_pool in a subclass to time the same network with flax's layers).
    conv_layer: ClassVar[type] = Conv
    max_pool: ClassVar[Callable[[jax.Array, int], jax.Array]] = staticmethod(_max_pool)

    def __post_init__(self) -> None:
        check_positive_int("num_outputs", self.num_outputs)
        if len(self.features) != 2:
            raise ValueError(f"features must hold two channel counts, got features = {tuple(self.features)}.")
        for size in (*self.features, self.dense_size):
            check_positive_int("features/dense_size", size)
        _check_rate("spatial_dropout_rate", self.spatial_dropout_rate)
        _check_rate("dropout_rate", self.dropout_rate)
        _check_rate("drop_block_rate", self.drop_block_rate)
        check_positive_int("drop_block_size", self.drop_block_size)
        check_choice("dropout_kind", self.dropout_kind, _DROPOUT_KINDS)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits of shape ``(batch, num_outputs)`` from NHWC images."""
        if x.ndim != 4:
            raise ValueError(f"RegularizedCNN needs NHWC images, got an input of shape {x.shape}.")

        def norm_relu(h: jax.Array) -> jax.Array:
            if self.batch_norm:
                h = jrl.BatchNorm(momentum=self.batch_norm_momentum)(h, use_running_average=not train)
            return nn.relu(h)

        def conv_block(h: jax.Array, features: int) -> jax.Array:
            h = norm_relu(self.conv_layer(features, (3, 3), use_bias=not self.batch_norm)(h))
            if self.drop_block_rate > 0.0:
                h = jrl.DropBlock(self.drop_block_rate, block_size=self.drop_block_size)(h, deterministic=not train)
            return h

        x = conv_block(x, self.features[0])
        if self.spatial_dropout_rate > 0.0:
            x = jrl.SpatialDropout(self.spatial_dropout_rate)(x, deterministic=not train)
        x = conv_block(x, self.features[1])
        x = self.max_pool(x, 2)
        x = jnp.reshape(x, (x.shape[0], -1))
        x = norm_relu(nn.Dense(self.dense_size, use_bias=not self.batch_norm)(x))
        x = _unit_dropout(x, self.dropout_rate, self.dropout_kind, train)
        return nn.Dense(self.num_outputs)(x)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """The fixed sinusoidal position encoding of Vaswani et al. (2017), float32 ``(length, dim)``."""
    position = np.arange(length, dtype=np.float64)[:, None]
    rate = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2, dtype=np.float64) / dim))
    table = np.zeros((length, dim))
    table[:, 0::2] = np.sin(position * rate)
    table[:, 1::2] = np.cos(position * rate[: dim // 2])
    return table.astype(np.float32)


class _EncoderBlock(nn.Module):
    num_heads: int
    mlp_dim: int
    dropout_rate: float
    drop_path_rate: float = 0.0

    def _residual(self, h: jax.Array, train: bool) -> jax.Array:
        h = _unit_dropout(h, self.dropout_rate, "dropout", train)
        if self.drop_path_rate > 0.0:  # stochastic depth: the whole branch dropped per example
            h = jrl.DropPath(self.drop_path_rate)(h, deterministic=not train)
        return h

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None, train: bool) -> jax.Array:
        # Pre-LayerNorm residual blocks (Xiong et al. 2020): stable without warm-up at this size.
        h = nn.LayerNorm()(x)
        h = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dropout_rate=self.dropout_rate, deterministic=not train
        )(h, h, mask=mask)
        x = x + self._residual(h, train)
        h = nn.LayerNorm()(x)
        h = nn.gelu(nn.Dense(self.mlp_dim)(h))
        h = _unit_dropout(h, self.dropout_rate, "dropout", train)
        h = nn.Dense(x.shape[-1])(h)
        return x + self._residual(h, train)


class TransformerClassifier(nn.Module):
    """A small encoder-only transformer: embeddings + positional encoding, pre-LN blocks, mean pooling.

    Each block is ``x + dropout(attention(LayerNorm(x)))`` then ``x + dropout(Dense(GELU(Dense(LayerNorm(
    x)))))``, with dropout also on the attention weights and inside the feed-forward network (``dropout_rate``,
    0.1 by default, as in the original transformer), and on the embedded inputs (``input_dropout_rate``, the
    same rate unless given). Dropout on the embeddings corrupts the residual stream itself, the only copy of
    each token's identity that every block reads; on tasks that compare tokens for equality (e.g.
    ``synthetic_sequences``) it slows learning far more than the same rate on the residual branches (see
    :mod:`jaxreg.experiments.transformer`). Tokens are embedded with
    ``nn.Embed`` (int32 inputs, ``vocab_size`` given; token 0 is padding and is masked out of attention and
    pooling); float inputs are projected with a ``Dense`` layer, images ``(batch, H, W, C)`` as ``H`` tokens
    of ``W * C`` features (one token per row). Fixed sinusoidal positions are added to the embeddings.

    Attributes:
      num_outputs: number of classes.
      vocab_size: token vocabulary for int32 inputs, ``None`` for float inputs.
      model_dim: embedding width.
      num_heads: attention heads (must divide ``model_dim``).
      num_layers: encoder blocks.
      mlp_dim: hidden width of the feed-forward network.
      dropout_rate: dropout on the attention weights, the residual branches and inside the feed-forward
        network, in ``[0, 1)``.
      input_dropout_rate: dropout on the embedded inputs (embeddings plus positions), in ``[0, 1)``; None
        (the default) uses ``dropout_rate``, as the original transformer does.
      embedding_dropout_rate: :func:`jaxreg.spatial_dropout` of whole embedding channels over the sequence
        (Keras ``SpatialDropout1D``), in ``[0, 1)``.
      drop_path_rate: stochastic depth (:class:`jaxreg.flax.linen.DropPath`) on both residual branches of
        every block, in ``[0, 1)``; 0 for none.
      max_length: longest sequence the positional table covers.

    Shapes: ``x`` int32 ``(batch, length)``, float ``(batch, length, features)`` or NHWC images; returns
    ``(batch, num_outputs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import TransformerClassifier
      >>> model = TransformerClassifier(num_outputs=2, vocab_size=32, model_dim=16, num_heads=2, mlp_dim=32)
      >>> tokens = jnp.array([[3, 5, 3, 0], [7, 1, 2, 9]], jnp.int32)
      >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, train=False))
      >>> out = jax.eval_shape(lambda v: model.apply(v, tokens, train=True, rngs={"dropout": jax.random.key(1)}),
      ...                      variables)
      >>> out.shape, variables["params"]["Embed_0"]["embedding"].shape
      ((2, 2), (32, 16))
    """

    num_outputs: int
    vocab_size: int | None = None
    model_dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 128
    dropout_rate: float = 0.1
    embedding_dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    max_length: int = 512
    input_dropout_rate: float | None = None

    def __post_init__(self) -> None:
        check_positive_int("num_outputs", self.num_outputs)
        check_positive_int("model_dim", self.model_dim, minimum=2)
        check_positive_int("num_heads", self.num_heads)
        check_positive_int("num_layers", self.num_layers)
        check_positive_int("mlp_dim", self.mlp_dim)
        if self.model_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide model_dim, got num_heads = {self.num_heads}, model_dim = {self.model_dim}."
            )
        _check_rate("dropout_rate", self.dropout_rate)
        _check_rate("embedding_dropout_rate", self.embedding_dropout_rate)
        _check_rate("drop_path_rate", self.drop_path_rate)
        if self.input_dropout_rate is not None:
            _check_rate("input_dropout_rate", self.input_dropout_rate)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Logits of shape ``(batch, num_outputs)``."""
        keep = None
        if self.vocab_size is not None:
            keep = x != 0
            h = nn.Embed(self.vocab_size, self.model_dim)(x)
        else:
            if x.ndim == 4:
                x = jnp.reshape(x, (x.shape[0], x.shape[1], -1))
            elif x.ndim == 2:
                x = x[..., None]
            h = nn.Dense(self.model_dim)(x)
        length = h.shape[1]
        if length > self.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length = {self.max_length}.")
        h = h + jnp.asarray(sinusoidal_positions(length, self.model_dim), h.dtype)
        if self.embedding_dropout_rate > 0.0:
            h = jrl.SpatialDropout(self.embedding_dropout_rate)(h, deterministic=not train)
        input_rate = self.dropout_rate if self.input_dropout_rate is None else self.input_dropout_rate
        h = _unit_dropout(h, input_rate, "dropout", train)
        mask = None if keep is None else nn.make_attention_mask(keep, keep)
        for _ in range(self.num_layers):
            h = _EncoderBlock(self.num_heads, self.mlp_dim, self.dropout_rate, self.drop_path_rate)(h, mask, train)
        h = nn.LayerNorm()(h)
        if keep is None:
            pooled = jnp.mean(h, axis=1)
        else:
            weights = keep.astype(h.dtype)[..., None]
            pooled = jnp.sum(h * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
        return nn.Dense(self.num_outputs)(pooled)


def build_model(name: str, *, num_outputs: int, input_dtype: str = "float32", vocab_size: int | None = None,
                **options: Any) -> nn.Module:
    """The model called ``name`` (``"mlp"``, ``"cnn"``, ``"transformer"``) for a dataset's inputs.

    Args:
      name: one of :data:`MODELS`.
      num_outputs: number of classes.
      input_dtype: ``"float32"`` or ``"int32"`` (token ids, which need ``vocab_size``); see
        :class:`jaxreg.experiments.data.DatasetInfo`.
      vocab_size: token vocabulary for int32 inputs.
      **options: attributes of the model class (``dropout_rate``, ``batch_norm``, ``hidden_sizes``...).

    Returns:
      An (unbound) ``flax.linen`` module.

    Raises:
      ValueError: unknown ``name``, a CNN for token inputs, or a bad option value.
      TypeError: an option the model does not have.

    Example:
      >>> from jaxreg.experiments.models import build_model
      >>> build_model("mlp", num_outputs=10, hidden_sizes=(64,), dropout_rate=0.5).hidden_sizes
      (64,)
    """
    check_choice("model", name, MODELS)
    tokens = input_dtype == "int32"
    if tokens and vocab_size is None:
        raise ValueError("vocab_size is required for int32 token inputs.")
    if name == "mlp":
        return MLP(num_outputs=num_outputs, vocab_size=vocab_size if tokens else None, **options)
    if name == "cnn":
        if tokens:
            raise ValueError("model 'cnn' needs image inputs; use 'mlp' or 'transformer' for token sequences.")
        return RegularizedCNN(num_outputs=num_outputs, **options)
    return TransformerClassifier(num_outputs=num_outputs, vocab_size=vocab_size if tokens else None, **options)


class SweepMLP(nn.Module):
    """An MLP whose regularizers are call arguments, so that they can be traced (swept under ``jax.vmap``).

    ``[inputs -> jr.dropout(input_rate)] -> [Dense -> (BatchNorm if bn) -> ReLU -> jr.dropout(rate)] * len(
    hidden_sizes) -> Dense``. The models of :mod:`jaxreg.experiments.models` take their rates as static
    attributes (a rate of 0 removes the layer from the program); training many rates as one ``jax.vmap``-ped
    program needs them as arrays instead. With ``batch_norm=True`` every hidden layer holds a
    :class:`jaxreg.flax.linen.BatchNorm` (momentum 0.9, as the models' MLP) whose output is used where the
    model-state variable ``switches/batch_norm`` (a bool scalar, True after ``init``) is true (a
    ``jnp.where``), so members with and without batch norm share one structure, and evaluation reads each
    member's switch from its state.

    Attributes:
      num_outputs: number of classes (or regression targets).
      hidden_sizes: hidden widths.
      batch_norm: whether the batch-norm layers (and their ``switches/batch_norm`` variable) exist.

    Shapes: ``x`` ``(batch, ...)`` is flattened; returns ``(batch, num_outputs)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxreg.experiments.models import SweepMLP
      >>> model = SweepMLP(num_outputs=3, hidden_sizes=(8,))
      >>> variables = model.init(jax.random.key(0), jnp.ones((2, 4)), train=False)
      >>> out = jax.vmap(lambda r: model.apply(variables, jnp.ones((2, 4)), train=True, rate=r,
      ...                                      rngs={"dropout": jax.random.key(1)}))(jnp.array([0.0, 0.5]))
      >>> out.shape
      (2, 2, 3)
    """

    num_outputs: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool, rate: Any = 0.0, input_rate: Any = 0.0) -> jax.Array:
        """Outputs ``(batch, num_outputs)``; the rates (floats or traced scalars) apply when ``train``."""
        x = jnp.reshape(x, (x.shape[0], -1))
        use_bn = None
        if self.batch_norm:
            use_bn = self.variable("switches", "batch_norm", lambda: jnp.ones((), bool)).value
        if train:
            x = noise.dropout(self.make_rng("dropout"), x, jnp.asarray(input_rate, x.dtype))
        for size in self.hidden_sizes:
            h = nn.Dense(size)(x)
            if self.batch_norm:
                h = jnp.where(use_bn, jrl.BatchNorm(momentum=0.9)(h, use_running_average=not train), h)
            x = nn.relu(h)
            if train:
                x = noise.dropout(self.make_rng("dropout"), x, jnp.asarray(rate, x.dtype))
        return nn.Dense(self.num_outputs)(x)
