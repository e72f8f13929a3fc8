"""Compiled programs of the experiments: model, optimizer, train and eval steps, built once and shared.

A :class:`Program` holds everything compiled for one regularization setup of a linen model (its jitted
initializer, the optimizer, :func:`jaxreg.make_train_step` and :func:`jaxreg.make_eval_step`); every story,
``compare`` included, builds its runs with :func:`build_program` and trains them with
:func:`jaxreg.experiments.runner.train_run`. A :class:`SweepProgram` (:func:`sweep_program`) is one program for
many members: a :class:`jaxreg.experiments.models.SweepMLP` whose dropout rates, penalty coefficients and
proximal-L1 strength are traced hyperparameters, trained as one ``jax.vmap``-ped program by
:func:`jaxreg.fit_members` / :func:`jaxreg.sweep_fit` / :func:`jaxreg.kfold_fit`.

**The cache policy.** The library caches nothing (JAX's own jit cache shares compilations of equal
functions); the lab caches the *builders* of its programs with :func:`cached`, one bounded
``functools.lru_cache`` policy, so equal arguments return the same program object and its compiled steps are
reused by every story and run of one process (the ``jaxreg`` command, the test suite).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxreg.experiments.keys import augment_key
from jaxreg.flax.linen import linen_apply
from jaxreg.penalties import elastic_net, l1, l2
from jaxreg.select import kernel_mask
from jaxreg.train import Penalty, make_eval_step, make_train_step
from jaxreg.transforms import proximal_l1

__all__ = [
    "cached",
    "Program",
    "SweepProgram",
    "SWEEP_HPARAMS",
    "cross_entropy",
    "squared_error",
    "with_augmentation",
    "build_program",
    "mlp_program",
    "sweep_program",
    "sweep_hparams",
]

_Builder = TypeVar("_Builder", bound=Callable[..., Any])
_CACHE_SIZE = 64


def cached(builder: _Builder) -> _Builder:
    """The lab's one cache policy for compiled programs: ``functools.lru_cache(maxsize=64)`` on a builder.

    Builders take hashable arguments (modules, frozen dataclasses, tuples, numbers), so equal arguments return
    the same program and its compilations are shared.
    """
    return functools.lru_cache(maxsize=_CACHE_SIZE)(builder)  # type: ignore[return-value]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels (``optax``'s), shape ``(batch,)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example squared error, averaged over trailing axes: shape ``(batch,)`` (the mean is the MSE)."""
    return jnp.mean(jnp.square(predictions - targets), axis=tuple(range(1, predictions.ndim)))


@cached
def _jit_init(module: nn.Module) -> Callable[[jax.Array, jax.Array], Any]:
    # Cached by module (linen modules compare by value): equal modules share one compiled initializer.
    return jax.jit(functools.partial(module.init, train=False))


class Program(NamedTuple):
    """Everything compiled for one regularization setup: initializer, optimizer, train and eval steps.

    Attributes:
      init: ``init(key, x) -> variables`` (the module's jitted ``init`` in evaluation mode).
      optimizer: the optax transformation.
      train_step: from :func:`jaxreg.make_train_step` (jitted).
      eval_step: from :func:`jaxreg.make_eval_step` (jitted).
      task: ``"classification"`` or ``"regression"``.
      apply_fn: the model's ``apply_fn`` (for :func:`jaxreg.update_bn`).
      average: ``"ema"``/``"swa"`` when the eval step evaluates averaged weights, else None.
      ema_decay: the EMA decay the state must keep (``create_train_state(ema_decay=...)``), or None.
      swa_fraction: SWA averages the last ``1 - swa_fraction`` of the epochs, or None.
      hparams: traced hyperparameters (a dict of scalar arrays), or None; when given, ``train_step`` is a
        function ``hparams -> step`` and :func:`jaxreg.fit` gets ``hparams=``, so programs that differ only in
        these values share one compilation (``jaxreg compare``'s penalties, dropout rate and batch-norm switch).
      params_view: ``params -> params`` the run is recorded with (counts, norms, histograms), e.g. without the
        batch-norm parameters a switched-off layer carries; None for all of them.
    """

    init: Callable[[jax.Array, jax.Array], Any]
    optimizer: optax.GradientTransformation
    train_step: Callable[..., Any]
    eval_step: Callable[..., Any]
    task: str
    apply_fn: Callable[..., Any] | None = None
    average: str | None = None
    ema_decay: float | None = None
    swa_fraction: float | None = None
    hparams: Mapping[str, jax.Array] | None = None
    params_view: Callable[[Any], Any] | None = None


def with_augmentation(apply_fn: Callable, augment_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
    """Wrap an ``apply_fn`` so that training batches are augmented with ``augment_fn(key, x)`` in the step.

    The key is :func:`jaxreg.experiments.keys.augment_key` of the step's key, a stream distinct from the model's
    dropout noise; evaluation
    (``training=False``) sees the raw inputs. The augmentation runs inside the same compiled step.

    Args:
      apply_fn: a model in the :mod:`jaxreg.train` contract.
      augment_fn: ``augment_fn(key, x) -> x`` (e.g. ``functools.partial(jr.random_crop, padding=1)``).

    Returns:
      The wrapped ``apply_fn``.
    """

    def apply_augmented(params, model_state, x, *, key, training):
        if training and key is not None:
            x = augment_fn(augment_key(key), x)
        return apply_fn(params, model_state, x, key=key, training=training)

    return apply_augmented


def build_program(module: nn.Module, optimizer: optax.GradientTransformation, *, task: str = "classification",
                  penalties: Sequence[Penalty | tuple] = (), augment_fn: Callable | None = None,
                  init_module: nn.Module | None = None, step_options: Mapping[str, Any] | None = None,
                  loss_fn: Callable | None = None, ema_decay: float | None = None,
                  swa_fraction: float | None = None) -> Program:
    """A :class:`Program` for a linen ``module`` trained with ``optimizer`` and coupled ``penalties``.

    Args:
      module: a ``flax.linen`` module whose ``__call__(x, train)`` returns the outputs.
      optimizer: the optax transformation (regularizing transforms included).
      task: ``"classification"`` (cross-entropy) or ``"regression"`` (squared error).
      penalties: :class:`jaxreg.Penalty` s of :func:`jaxreg.make_train_step`.
      augment_fn: optional ``augment_fn(key, x)`` applied to training batches (:func:`with_augmentation`).
      init_module: the module whose ``init`` gives the initial variables (default ``module``): pass one
        module for variants that differ only in settings that do not change the variables (dropout rates),
        so that they share one compiled initializer and start from the same parameters.
      step_options: more keyword arguments of :func:`jaxreg.make_train_step` (``augment``,
        ``output_penalties``, ``rdrop``...).
      loss_fn: the training loss (default: cross-entropy or squared error by ``task``); evaluation keeps the
        task's default.
      ema_decay: evaluate the EMA of the params with this decay.
      swa_fraction: evaluate the SWA average of the params after this fraction of the epochs.

    Returns:
      The :class:`Program`.
    """
    apply_fn = linen_apply(module)
    if augment_fn is not None:
        apply_fn = with_augmentation(apply_fn, augment_fn)
    eval_loss = cross_entropy if task == "classification" else squared_error
    train_step = make_train_step(apply_fn, loss_fn or eval_loss, optimizer, penalties=penalties,
                                 **dict(step_options or {}))
    average = "swa" if swa_fraction is not None else ("ema" if ema_decay is not None else None)
    eval_step = make_eval_step(apply_fn, eval_loss, average=average)
    return Program(_jit_init(module if init_module is None else init_module), optimizer, train_step, eval_step, task,
                   apply_fn=apply_fn, average=average, ema_decay=ema_decay, swa_fraction=swa_fraction)


def soft_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy with integer labels, or with soft labels (mixup, cutmix, label smoothing) of ``logits``' shape.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxreg.experiments.programs import soft_cross_entropy
      >>> z = jnp.array([[1.0, 0.0]])
      >>> bool(jnp.allclose(soft_cross_entropy(z, jnp.array([0])), soft_cross_entropy(z, jnp.array([[1.0, 0.0]]))))
      True
    """
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return optax.softmax_cross_entropy(logits, labels.astype(logits.dtype))


@cached
def _mlp_program(num_outputs: int, vocab_size: int | None, hidden_sizes: tuple[int, ...], learning_rate: float,
                 dropout_rate: float, batch_norm: bool, task: str) -> Program:
    from jaxreg.experiments.models import MLP

    module = MLP(num_outputs=num_outputs, hidden_sizes=hidden_sizes, dropout_rate=dropout_rate,
                 batch_norm=batch_norm, vocab_size=vocab_size)
    return build_program(module, optax.adam(learning_rate), task=task)


def mlp_program(num_outputs: int, vocab_size: int | None, hidden_sizes: Sequence[int], *,
                learning_rate: float = 1e-3, dropout_rate: float = 0.0, batch_norm: bool = False,
                task: str = "classification") -> Program:
    """The (cached) :class:`Program` of a :class:`jaxreg.experiments.models.MLP` trained with Adam.

    Equal arguments return the same program, so its compiled steps are shared by every story and run that
    trains this MLP this way.

    Args:
      num_outputs, vocab_size, hidden_sizes, dropout_rate, batch_norm: the model.
      learning_rate: Adam's learning rate.
      task: ``"classification"`` or ``"regression"``.

    Returns:
      The :class:`Program`.
    """
    return _mlp_program(int(num_outputs), vocab_size, tuple(int(s) for s in hidden_sizes), float(learning_rate),
                        float(dropout_rate), bool(batch_norm), task)


# The traced hyperparameters of a sweep program; a member leaves out the ones it does not use (0).
SWEEP_HPARAMS = ("dropout", "input_dropout", "l1", "l2", "elastic_net", "proximal_l1")


class SweepProgram(NamedTuple):
    """One compiled program for many members (:func:`jaxreg.fit_members`) with traced hyperparameters.

    Attributes:
      module: the :class:`jaxreg.experiments.models.SweepMLP`.
      init: ``init(key, x) -> variables`` (jitted).
      optimizer: ``optax.chain(optax.adam(lr), jr.proximal_l1(0.0, ...))``, whose ``init`` builds each member's
        optimizer state (the proximal strength does not change the state's structure).
      make_step: ``hparams -> train step`` for :func:`jaxreg.fit_members` / :func:`jaxreg.sweep_fit` /
        :func:`jaxreg.kfold_fit`: the dropout rates, L1/L2/elastic-net coefficients and the proximal L1
        strength of one member (:data:`SWEEP_HPARAMS`), all traced.
      eval_step: the (unjitted) evaluation step, no noise.
      member_eval: ``member_eval(states, x, y, weights)``: ``eval_step`` vmapped over stacked states, jitted.
      task: ``"classification"`` or ``"regression"``.
    """

    module: nn.Module
    init: Callable[[jax.Array, jax.Array], Any]
    optimizer: optax.GradientTransformation
    make_step: Callable[[Mapping[str, jax.Array]], Callable[..., Any]]
    eval_step: Callable[..., Any]
    member_eval: Callable[..., Any]
    task: str


@cached
def _sweep_program(num_outputs: int, hidden_sizes: tuple[int, ...], learning_rate: float, task: str,
                   batch_norm: bool, optimizer: str) -> SweepProgram:
    from jaxreg.experiments.models import SweepMLP

    module = SweepMLP(num_outputs=num_outputs, hidden_sizes=hidden_sizes, batch_norm=batch_norm)
    loss_fn = cross_entropy if task == "classification" else squared_error

    base = optax.adam(learning_rate) if optimizer == "adam" else optax.sgd(learning_rate, momentum=0.9)

    def optimizer_with(strength: Any) -> optax.GradientTransformation:
        return optax.chain(base, proximal_l1(strength, learning_rate=learning_rate, mask=kernel_mask))

    def make_step(h: Mapping[str, jax.Array]) -> Callable[..., Any]:
        # Called inside the vmapped program with one member's traced hyperparameters.
        apply_fn = linen_apply(module, call_args={"rate": h["dropout"], "input_rate": h["input_dropout"]})
        penalties = [Penalty(l1, h["l1"], kernel_mask), Penalty(l2, h["l2"], kernel_mask),
                     Penalty(functools.partial(elastic_net, alpha=h["elastic_net"], l1_ratio=0.5), 1.0, kernel_mask)]
        return make_train_step(apply_fn, loss_fn, optimizer_with(h["proximal_l1"]), penalties=penalties, jit=False)

    plain_eval = make_eval_step(linen_apply(module), loss_fn, jit=False)
    member_eval = jax.jit(jax.vmap(plain_eval, in_axes=(0, None, None, None)))
    return SweepProgram(module, _jit_init(module), optimizer_with(0.0), make_step, plain_eval, member_eval, task)


def sweep_program(num_outputs: int, hidden_sizes: tuple[int, ...], *, learning_rate: float = 1e-3,
                  task: str = "classification", batch_norm: bool = False, optimizer: str = "adam") -> SweepProgram:
    """The (cached) :class:`SweepProgram` of a ``SweepMLP`` (:mod:`jaxreg.experiments.models`), Adam + proximal L1.

    Args:
      num_outputs: classes (or regression targets).
      hidden_sizes: hidden widths (a tuple).
      learning_rate: the optimizer's learning rate.
      task: ``"classification"`` or ``"regression"``.
      batch_norm: give the MLP switchable batch-norm layers.
      optimizer: ``"adam"`` (``optax.adam``) or ``"sgd"`` (``optax.sgd`` with momentum 0.9), followed by the
        traced proximal L1 step.

    Returns:
      The :class:`SweepProgram`.
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got optimizer = {optimizer!r}.")
    return _sweep_program(int(num_outputs), tuple(int(s) for s in hidden_sizes), float(learning_rate), task,
                          bool(batch_norm), optimizer)


def sweep_hparams(members: Sequence[Mapping[str, float]]) -> dict[str, jax.Array]:
    """Stack per-member hyperparameter dicts into the ``hparams`` of a sweep (absent names are 0).

    Example:
      >>> from jaxreg.experiments.programs import sweep_hparams
      >>> h = sweep_hparams([{"dropout": 0.5}, {"l2": 1e-3}])
      >>> h["dropout"].tolist(), h["l2"].shape
      ([0.5, 0.0], (2,))
    """
    for member in members:
        unknown = set(member) - set(SWEEP_HPARAMS)
        if unknown:
            raise ValueError(f"unknown sweep hyperparameter(s) {sorted(unknown)}; known: {SWEEP_HPARAMS}.")
    return {name: jnp.asarray([float(m.get(name, 0.0)) for m in members], jnp.float32) for name in SWEEP_HPARAMS}
