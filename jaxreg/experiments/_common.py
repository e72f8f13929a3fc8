"""Shared machinery of the experiment stories (floor 7, private): data, compiled programs, runs, tables, figures.

Every story module (``dropout_mlp``, ``penalties``, ``regression``, ``cnn``, ``transformer``, ``kfold``,
``early_stopping``, ``bias_variance``) loads its splits with :func:`load_splits` and trains in one of two ways:

* one run per variant: a :class:`Program` (:func:`build_program`, cached by the story; :func:`mlp_program`)
  trained by :func:`train_run`, a :func:`jaxreg.fit` with the training set evaluated in evaluation mode after
  every epoch (``cnn``, ``transformer``, ``early_stopping``);
* all variants as the members of ONE ``jax.vmap``-ped program: a :class:`SweepProgram` (:func:`sweep_program`,
  a :class:`SweepMLP` whose dropout rates, penalty coefficients and proximal-L1 strength are traced
  hyperparameters, batch norm a per-member switch) trained by :func:`train_members` (:func:`jaxreg.fit_members`)
  or by :func:`jaxreg.sweep_fit` / :func:`jaxreg.kfold_fit` (``dropout_mlp``, ``penalties``, ``regression``,
  ``kfold``, ``bias_variance``). One compilation serves every variant, and equal programs are shared between
  stories run in one process.

Either way a run record (:func:`run_record`) has the keys of
:func:`jaxreg.experiments.compare.train_technique`'s (``technique``, ``train_accuracy``, ``val_accuracy``,
``test_accuracy``, ``*_loss``, ``generalization_gap``, ``epochs_run``, ``sparsity``, ``near_zero_fraction``,
``kernel_l2_norm``, ``num_params``, ``history``...), so the stories' records plot with :mod:`jaxreg.experiments.plots`.
:func:`write_outputs` writes ``results.json`` (:func:`jaxreg.experiments.report.write_json`), ``report.md`` and
the figures.

Reproducibility: a run is a pure function of its arguments on a given machine and JAX version:
:func:`init_key` (an ``rbg`` key from the seed) initializes, :func:`train_key` (``fold_in(key(seed), 1)``, as in
``compare``) drives the shuffles and the noise; ``results.json`` holds no timing, so it is byte-identical for
equal arguments.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreg.experiments import data as _data
from jaxreg.loop import fit, fit_members, stack_members
from jaxreg.experiments import UsageError, add_common_arguments, check_common_arguments
from jaxreg.noise import dropout
from jaxreg.select import kernel_mask
from jaxreg.flax.linen import linen_apply
from jaxreg.train import create_train_state, make_eval_step, make_train_step

__all__ = [
    "EVAL_TRAIN_LIMIT",
    "NEAR_ZERO",
    "SWEEP_HPARAMS",
    "Splits",
    "Program",
    "SweepMLP",
    "SweepProgram",
    "add_story_arguments",
    "check_story_arguments",
    "check_number",
    "parse_floats",
    "parse_sizes",
    "load_splits",
    "cross_entropy",
    "squared_error",
    "init_key",
    "train_key",
    "linen_apply_with",
    "with_augmentation",
    "build_program",
    "mlp_program",
    "sweep_program",
    "sweep_hparams",
    "member_states",
    "train_members",
    "member_records",
    "evaluate",
    "final_metrics",
    "run_record",
    "train_run",
    "kernel_values",
    "histogram",
    "finite",
    "columns",
    "format_table",
    "log",
    "config_of",
    "write_outputs",
    "new_figure",
    "as_floats",
    "plot_curves",
]

# The training set is re-evaluated (in evaluation mode, one batch) after every epoch when it is at most this
# large; beyond it the history's train curve is the running training-mode mean instead.
EVAL_TRAIN_LIMIT = 10_000
# Final metrics are computed in chunks of this many examples (one compilation: the last chunk is padded
# and weighted out).
_EVAL_CHUNK = 2_048
# A weight counts as "near zero" below this magnitude (as in compare).
NEAR_ZERO = 1e-3
_HISTOGRAM_BINS = 60
# fold_in data of the augmentation stream ("aug "), as in compare: distinct from the model's dropout stream.
_AUGMENT_STREAM = 0x61756720


# ----------------------------------------------------------------------------------------------------------
# Arguments and data
# ----------------------------------------------------------------------------------------------------------


def _optional_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def add_story_arguments(parser: argparse.ArgumentParser, *, dataset: str = "digits", epochs: int = 10,
                        batch_size: int = 32, out: str = "runs/experiment", eval_size: int = 5000) -> None:
    """The common options (:func:`jaxreg.experiments.add_common_arguments`) plus ``--train-size``/``--eval-size``.

    ``--train-size N`` keeps a seeded random subset of N training examples (default: all); ``--eval-size N``
    caps the validation and test sets (default 5000: the validation set is evaluated in one batch after
    every epoch, which a full CIFAR-10 split would make slow and memory-hungry; the bundled and synthetic
    sets are smaller than that).

    Args:
      parser: the story's ``argparse`` parser.
      dataset, epochs, batch_size, out: defaults of the common options.
      eval_size: default of ``--eval-size``.
    """
    add_common_arguments(parser, dataset=dataset, epochs=epochs, batch_size=batch_size, out=out)
    parser.add_argument("--train-size", type=_optional_positive_int, default=None,
                        help="use a seeded random subset of this many training examples (default: all)")
    parser.add_argument("--eval-size", type=_optional_positive_int, default=eval_size,
                        help=f"cap the validation and test sets at this many examples (default: {eval_size})")


def check_story_arguments(args: argparse.Namespace, *, task: str = "classification", image: bool = False,
                          float_inputs: bool = False) -> _data.DatasetInfo:
    """Check the common options and that the dataset suits the story; return its :class:`DatasetInfo`.

    Args:
      args: parsed options (from :func:`add_story_arguments`).
      task: the task the story needs (``"classification"`` or ``"regression"``).
      image: whether the story needs NHWC image inputs.
      float_inputs: whether the story needs float inputs (its MLP has no token embedding).

    Returns:
      The dataset's :class:`jaxreg.experiments.data.DatasetInfo`.

    Raises:
      UsageError: unknown dataset, a batch size the devices do not divide, a dataset of the wrong task or
        without images, a non-finite learning rate, or ``--checkpoint-dir`` (not supported by the stories).
    """
    check_common_arguments(args)
    if getattr(args, "checkpoint_dir", None) is not None:
        raise UsageError("--checkpoint-dir is not supported by this experiment (its runs take seconds to minutes)")
    info = _data.info(args.dataset, data_dir=args.data_dir)
    if info.task != task:
        raise UsageError(f"this experiment needs a {task} dataset, got {args.dataset!r} ({info.task})")
    if image and len(info.input_shape) != 3:
        raise UsageError(f"this experiment needs image inputs, {args.dataset!r} has shape {info.input_shape}")
    if float_inputs and info.input_dtype != "float32":
        raise UsageError(f"this experiment's MLP needs float inputs, {args.dataset!r} has token inputs")
    learning_rate = getattr(args, "learning_rate", None)
    if learning_rate is not None and not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise UsageError(f"--learning-rate must be a finite number > 0, got {learning_rate:g}")
    return info


def check_number(name: str, value: float, *, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = True, low_inclusive: bool = True) -> float:
    """Check that option ``name`` is a finite number in the range; return it as a float.

    Raises:
      UsageError: naming the option and the value.

    Example:
      >>> from jaxreg.experiments._common import check_number
      >>> check_number("--rate", 0.5, high=1.0, high_inclusive=False)
      0.5
    """
    value = float(value)
    too_low = value < low or (value == low and not low_inclusive)
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if not math.isfinite(value) or too_low or too_high:
        bound = f"{'>=' if low_inclusive else '>'} {low:g}"
        if high is not None:
            bound += f" and {'<=' if high_inclusive else '<'} {high:g}"
        raise UsageError(f"{name} must be {bound}, got {value:g}")
    return value


def parse_floats(name: str, text: str, *, low: float = 0.0, high: float | None = None,
                 high_inclusive: bool = True) -> tuple[float, ...]:
    """Parse a comma-separated list of numbers for option ``name``, each in ``[low, high]``.

    Args:
      name: the option, for messages (``"--l2"``).
      text: e.g. ``"0,1e-4,1e-3"``.
      low, high: the allowed range (``high`` None: unbounded); ``high_inclusive`` whether ``high`` is allowed.

    Returns:
      The numbers, in order.

    Raises:
      UsageError: an empty list, a non-number, a value out of range or a repeated value.

    Example:
      >>> from jaxreg.experiments._common import parse_floats
      >>> parse_floats("--l2", "0, 1e-4,1e-3")
      (0.0, 0.0001, 0.001)
    """
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{name} must be a comma-separated list of numbers, got {text!r}") from None
        too_high = high is not None and (value > high or (value == high and not high_inclusive))
        if not math.isfinite(value) or value < low or too_high:
            bound = "" if high is None else f" and {'<=' if high_inclusive else '<'} {high:g}"
            raise UsageError(f"{name} values must be >= {low:g}{bound}, got {item}")
        if value in values:
            raise UsageError(f"{name} lists {item} twice")
        values.append(value)
    return tuple(values)


def parse_sizes(name: str, text: str) -> tuple[int, ...]:
    """Parse a comma-separated list of layer widths (ints >= 1) for option ``name``.

    Example:
      >>> from jaxreg.experiments._common import parse_sizes
      >>> parse_sizes("--hidden-sizes", "512,512")
      (512, 512)
    """
    try:
        sizes = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"{name} must be comma-separated integers such as 512,512, got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise UsageError(f"{name} must hold integers >= 1, got {text!r}")
    return sizes


class Splits(NamedTuple):
    """The three splits of a dataset as device arrays, with its metadata."""

    info: _data.DatasetInfo
    train: tuple[jax.Array, jax.Array]
    validation: tuple[jax.Array, jax.Array]
    test: tuple[jax.Array, jax.Array]


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(y):
        return x, y
    keep = np.sort(np.random.default_rng([seed, stream]).permutation(len(y))[:size])
    return x[keep], y[keep]


def load_splits(dataset: str, *, seed: int, data_dir: str | None = None, train_size: int | None = None,
                eval_size: int | None = None, batch_size: int | None = None, **options: Any) -> Splits:
    """Load ``train``/``validation``/``test`` of a dataset (:func:`jaxreg.experiments.data.load`) onto the device.

    Args:
      dataset: a dataset name of :mod:`jaxreg.experiments.data`.
      seed: the split seed.
      data_dir: TFDS data directory.
      train_size: keep a seeded random subset of this many training examples (None: all).
      eval_size: keep at most this many validation and test examples (seeded subsets; None: all).
      batch_size: if given, check that the training set holds at least one batch.
      **options: dataset options of :func:`jaxreg.experiments.data.load` (e.g. ``n_train`` of the synthetic sets).

    Returns:
      :class:`Splits`.

    Raises:
      UsageError: a batch size larger than the training set.
      jaxreg.experiments.data.DatasetUnavailableError: a TFDS set that is not prepared offline.
    """
    info = _data.info(dataset, data_dir=data_dir)
    arrays = {}
    for stream, split in enumerate(_data.SPLITS):
        x, y = _data.load(dataset, split=split, seed=seed, data_dir=data_dir, **options)
        x, y = _subset(x, y, train_size if split == "train" else eval_size, seed, stream)
        arrays[split] = (jnp.asarray(x), jnp.asarray(y))
    num_train = int(arrays["train"][1].shape[0])
    if batch_size is not None and batch_size > num_train:
        raise UsageError(f"--batch-size must be <= the {num_train} training examples, got {batch_size}")
    return Splits(info, arrays["train"], arrays["validation"], arrays["test"])


# ----------------------------------------------------------------------------------------------------------
# Programs
# ----------------------------------------------------------------------------------------------------------


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels (``optax``'s), shape ``(batch,)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example squared error, averaged over trailing axes: shape ``(batch,)`` (the mean is the MSE)."""
    return jnp.mean(jnp.square(predictions - targets), axis=tuple(range(1, predictions.ndim)))


def init_key(seed: int) -> jax.Array:
    """The key that initializes the parameters of a run with ``seed``: ``jax.random.key(seed, impl="rbg")``.

    Initialization draws one truncated normal per kernel; with the default Threefry keys XLA compiles each
    draw's unrolled hash, which costs more (on CPU) than compiling a small model's whole training epoch.
    ``rbg`` keys (XLA's RngBitGenerator) compile in a fraction of that time. Training noise and shuffling
    keep the default Threefry key ``fold_in(key(seed), 1)``, as in ``jaxreg compare``. RngBitGenerator bits
    are deterministic on a given machine and JAX version (like every result here), not across backends.
    """
    return jax.random.key(seed, impl="rbg")


def train_key(seed: int) -> jax.Array:
    """The root key of a run's training noise and shuffles: ``fold_in(jax.random.key(seed), 1)``."""
    return jax.random.fold_in(jax.random.key(seed), 1)


@functools.lru_cache(maxsize=64)
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
    """

    init: Callable[[jax.Array, jax.Array], Any]
    optimizer: optax.GradientTransformation
    train_step: Callable[..., Any]
    eval_step: Callable[..., Any]
    task: str


def linen_apply_with(module: nn.Module, **call_args: Any) -> Callable:
    """Like :func:`jaxreg.linen_apply`, passing extra (possibly traced) keyword arguments to ``__call__``.

    Args:
      module: a ``flax.linen`` module whose ``__call__(x, train, **call_args)`` returns the outputs.
      **call_args: e.g. ``rate=h["dropout"]`` for a :class:`SweepMLP`.

    Returns:
      ``apply_fn(params, model_state, x, *, key, training) -> (outputs, model_state)``; when training with a
      non-empty ``model_state`` (batch statistics) the collections are mutable and returned updated.
    """

    def apply_fn(params, model_state, x, *, key, training):
        rngs = {"dropout": key} if key is not None else None
        variables = {"params": params, **model_state}
        if training and model_state:
            outputs, updates = module.apply(variables, x, train=True, rngs=rngs, mutable=list(model_state),
                                            **call_args)
            return outputs, {**model_state, **updates}
        return module.apply(variables, x, train=training, rngs=rngs, **call_args), model_state

    return apply_fn


def with_augmentation(apply_fn: Callable, augment_fn: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
    """Wrap an ``apply_fn`` so that training batches are augmented with ``augment_fn(key, x)`` in the step.

    The key is ``fold_in(step_key, 0x61756720)``, a stream distinct from the model's dropout noise; evaluation
    (``training=False``) sees the raw inputs. This is how ``jaxreg compare`` augments, inside the same
    compiled step.

    Args:
      apply_fn: a model in the :mod:`jaxreg.train` contract.
      augment_fn: ``augment_fn(key, x) -> x`` (e.g. ``functools.partial(jr.random_crop, padding=1)``).

    Returns:
      The wrapped ``apply_fn``.
    """

    def apply_augmented(params, model_state, x, *, key, training):
        if training and key is not None:
            x = augment_fn(jax.random.fold_in(key, _AUGMENT_STREAM), x)
        return apply_fn(params, model_state, x, key=key, training=training)

    return apply_augmented


def build_program(module: nn.Module, optimizer: optax.GradientTransformation, *, task: str = "classification",
                  penalties: Sequence[tuple] = (), augment_fn: Callable | None = None,
                  init_module: nn.Module | None = None) -> Program:
    """A :class:`Program` for a linen ``module`` trained with ``optimizer`` and coupled ``penalties``.

    Args:
      module: a ``flax.linen`` module whose ``__call__(x, train)`` returns the outputs.
      optimizer: the optax transformation (regularizing transforms included).
      task: ``"classification"`` (cross-entropy) or ``"regression"`` (squared error).
      penalties: ``(penalty_fn, coefficient, mask)`` triples of :func:`jaxreg.make_train_step`.
      augment_fn: optional ``augment_fn(key, x)`` applied to training batches (:func:`with_augmentation`).
      init_module: the module whose ``init`` gives the initial variables (default ``module``): pass one
        module for variants that differ only in settings that do not change the variables (dropout rates),
        so that they share one compiled initializer and start from the same parameters.

    Returns:
      The :class:`Program`.
    """
    apply_fn = linen_apply(module)
    if augment_fn is not None:
        apply_fn = with_augmentation(apply_fn, augment_fn)
    loss_fn = cross_entropy if task == "classification" else squared_error
    train_step = make_train_step(apply_fn, loss_fn, optimizer, penalties=penalties)
    eval_step = make_eval_step(apply_fn, loss_fn)
    return Program(_jit_init(module if init_module is None else init_module), optimizer, train_step, eval_step, task)


@functools.lru_cache(maxsize=32)
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
      >>> from jaxreg.experiments._common import SweepMLP
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
        from jaxreg.flax.linen import BatchNorm

        x = jnp.reshape(x, (x.shape[0], -1))
        use_bn = None
        if self.batch_norm:
            use_bn = self.variable("switches", "batch_norm", lambda: jnp.ones((), bool)).value
        if train:
            x = dropout(self.make_rng("dropout"), x, jnp.asarray(input_rate, x.dtype))
        for size in self.hidden_sizes:
            h = nn.Dense(size)(x)
            if self.batch_norm:
                h = jnp.where(use_bn, BatchNorm(momentum=0.9)(h, use_running_average=not train), h)
            x = nn.relu(h)
            if train:
                x = dropout(self.make_rng("dropout"), x, jnp.asarray(rate, x.dtype))
        return nn.Dense(self.num_outputs)(x)


# The traced hyperparameters of a sweep program; a member leaves out the ones it does not use (0).
SWEEP_HPARAMS = ("dropout", "input_dropout", "l1", "l2", "elastic_net", "proximal_l1")


class SweepProgram(NamedTuple):
    """One compiled program for many members (:func:`jaxreg.fit_members`) with traced hyperparameters.

    Attributes:
      module: the :class:`SweepMLP`.
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


@functools.lru_cache(maxsize=16)
def _sweep_program(num_outputs: int, hidden_sizes: tuple[int, ...], learning_rate: float, task: str,
                   batch_norm: bool) -> SweepProgram:
    from jaxreg.penalties import elastic_net, l1, l2
    from jaxreg.transforms import proximal_l1

    module = SweepMLP(num_outputs=num_outputs, hidden_sizes=hidden_sizes, batch_norm=batch_norm)
    loss_fn = cross_entropy if task == "classification" else squared_error

    def optimizer_with(strength: Any) -> optax.GradientTransformation:
        return optax.chain(optax.adam(learning_rate),
                           proximal_l1(strength, learning_rate=learning_rate, mask=kernel_mask))

    def make_step(h: Mapping[str, jax.Array]) -> Callable[..., Any]:
        # Called inside the vmapped program with one member's traced hyperparameters.
        apply_fn = linen_apply_with(module, rate=h["dropout"], input_rate=h["input_dropout"])
        penalties = [(l1, h["l1"], kernel_mask), (l2, h["l2"], kernel_mask),
                     (functools.partial(elastic_net, alpha=h["elastic_net"], l1_ratio=0.5), 1.0, kernel_mask)]
        return make_train_step(apply_fn, loss_fn, optimizer_with(h["proximal_l1"]), penalties=penalties, jit=False)

    plain_eval = make_eval_step(linen_apply_with(module), loss_fn, jit=False)
    member_eval = jax.jit(jax.vmap(plain_eval, in_axes=(0, None, None, None)))
    return SweepProgram(module, _jit_init(module), optimizer_with(0.0), make_step, plain_eval, member_eval, task)


# ----------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------


def evaluate(eval_fn: Callable, state: Any, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """Mean loss (and accuracy) on ``(x, y)``, in chunks of 2048 examples (one compilation per chunk shape).

    Args:
      eval_fn: ``eval_fn(state, x, y, weights)``: a step from :func:`jaxreg.make_eval_step`, or a
        :class:`SweepProgram`'s ``member_eval`` with stacked states.
      state: a :class:`jaxreg.TrainState` (stacked for ``member_eval``).
      x, y: the examples.

    Returns:
      ``{"loss": ..., "accuracy": ...}`` (accuracy for classification only): floats, or float64 numpy arrays
      of one value per member for ``member_eval``.
    """
    n = int(y.shape[0])
    if n <= _EVAL_CHUNK:
        return {k: np.asarray(v, np.float64) for k, v in jax.device_get(eval_fn(state, x, y, None)).items()}
    totals: dict[str, Any] = {}
    for start in range(0, n, _EVAL_CHUNK):
        stop = min(start + _EVAL_CHUNK, n)
        pad = _EVAL_CHUNK - (stop - start)
        take = np.concatenate([np.arange(start, stop), np.zeros(pad, np.int64)])
        weights = jnp.asarray(np.concatenate([np.ones(stop - start), np.zeros(pad)]).astype(np.float32))
        metrics = jax.device_get(eval_fn(state, x[take], y[take], weights))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64) * (stop - start)
    return {k: v / n for k, v in totals.items()}


def finite(value: Any) -> float | None:
    """``float(value)``, or None for NaN/inf (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def kernel_values(params: Any) -> np.ndarray:
    """All kernel weights (:func:`jaxreg.kernel_mask`) flattened into one numpy vector."""
    leaves = [np.asarray(leaf).ravel() for leaf, keep in
              zip(jax.tree.leaves(params), jax.tree.leaves(kernel_mask(params))) if keep]
    return np.concatenate(leaves) if leaves else np.zeros(0, np.float32)


def histogram(values: np.ndarray, *, bins: int = _HISTOGRAM_BINS) -> dict[str, list]:
    """A symmetric histogram of ``values`` as JSON-ready ``{"edges": [...], "counts": [...]}``."""
    bound = float(np.max(np.abs(values))) if values.size else 1.0
    bound = bound if bound > 0 else 1.0
    counts, edges = np.histogram(values, bins=bins, range=(-bound, bound))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _json_history(history: Mapping[str, list]) -> dict[str, list]:
    return {k: [finite(v) if isinstance(v, float) else v for v in vs] for k, vs in history.items()}


def run_record(label: str, task: str, final: Mapping[str, Mapping[str, Any]], params: Any,
               history: Mapping[str, list], *, settings: Mapping[str, Any] | None = None, skipped: int = 0,
               best_epoch: int | None = None) -> dict[str, Any]:
    """A JSON-ready run record (the keys of :func:`jaxreg.experiments.compare.train_technique`'s records).

    Keys: ``technique`` (= ``label``), ``settings``, final ``{train,val,test}_loss`` (and ``_accuracy`` for
    classification, ``_mse`` for regression), ``generalization_gap`` (train - test accuracy, or test - train
    MSE), ``epochs_run``, ``sparsity`` (exact zeros among kernel weights), ``near_zero_fraction`` (``|w| <
    1e-3``), ``kernel_l2_norm``, ``num_params``, ``skipped_steps``, ``weight_histogram``, ``history`` and, when
    given, ``best_epoch``.

    Args:
      label: the run's name.
      task: ``"classification"`` or ``"regression"``.
      final: ``{"train": metrics, "validation": metrics, "test": metrics}`` (:func:`evaluate`).
      params: the final parameters (numpy or JAX).
      history: :func:`jaxreg.fit`'s history.
      settings: the run's regularizers.
      skipped: steps skipped for non-finite values.
      best_epoch: the early-stopping best epoch, if any.

    Returns:
      The record.
    """
    flat = kernel_values(params)
    record: dict[str, Any] = {"technique": label, "settings": dict(settings or {})}
    for name, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        record[f"{prefix}_loss"] = finite(final[name]["loss"])
        if task == "classification":
            record[f"{prefix}_accuracy"] = float(final[name]["accuracy"])
        else:
            record[f"{prefix}_mse"] = finite(final[name]["loss"])
    if task == "classification":
        record["generalization_gap"] = record["train_accuracy"] - record["test_accuracy"]
    else:
        record["generalization_gap"] = finite(float(final["test"]["loss"]) - float(final["train"]["loss"]))
    total = int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))
    record.update({
        "epochs_run": len(history["epoch"]),
        "sparsity": float(np.mean(flat == 0.0)) if flat.size else 0.0,
        "near_zero_fraction": float(np.mean(np.abs(flat) < NEAR_ZERO)) if flat.size else 0.0,
        "kernel_l2_norm": float(np.sqrt(np.sum(np.square(flat.astype(np.float64))))),
        "num_params": total,
        "skipped_steps": int(skipped),
        "weight_histogram": histogram(flat),
        "history": _json_history(history),
    })
    if best_epoch is not None:
        record["best_epoch"] = int(best_epoch)
    return record


def final_metrics(eval_fn: Callable, state: Any, splits: Splits) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` on the three splits: ``{"train": ..., "validation": ..., "test": ...}``."""
    return {name: evaluate(eval_fn, state, *getattr(splits, name)) for name in ("train", "validation", "test")}


def train_run(label: str, program: Program, splits: Splits, *, seed: int, epochs: int, batch_size: int,
              early_stopping: Any = None, monitor: str = "val_loss", progress: bool = False,
              settings: Mapping[str, Any] | None = None, on_epoch_end: Callable | None = None) -> dict[str, Any]:
    """Initialize, :func:`jaxreg.fit` and summarize one run; returns its :func:`run_record`.

    Args:
      label: the run's name in tables and figures.
      program: its :class:`Program`.
      splits: the data.
      seed: :func:`init_key` (seed) initializes, :func:`train_key` (seed) is the state's key.
      epochs, batch_size, early_stopping, monitor, on_epoch_end: as :func:`jaxreg.fit`.
      progress: show fit's progress bar (on a terminal).
      settings: JSON-ready description of the run's regularizers.

    Returns:
      The run record (the training set is evaluated in evaluation mode after every epoch when it has at most
      10000 examples).
    """
    variables = program.init(init_key(seed), splits.train[0][:1])
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    state = create_train_state(params, program.optimizer, train_key(seed), model_state=model_state)
    eval_train = int(splits.train[1].shape[0]) <= EVAL_TRAIN_LIMIT
    state, history = fit(
        state, program.train_step, splits.train, epochs=epochs, batch_size=batch_size,
        val_data=splits.validation, eval_step=program.eval_step, early_stopping=early_stopping,
        monitor=monitor, eval_train=eval_train, progress=progress, on_epoch_end=on_epoch_end,
    )
    best_epoch = None if early_stopping is None else int(state.stopper.best_step)
    return run_record(label, program.task, final_metrics(program.eval_step, state, splits), state.params, history,
                      settings=settings, skipped=int(state.skipped), best_epoch=best_epoch)


@functools.lru_cache(maxsize=16)
def sweep_program(num_outputs: int, hidden_sizes: tuple[int, ...], *, learning_rate: float = 1e-3,
                  task: str = "classification", batch_norm: bool = False) -> SweepProgram:
    """The (cached) :class:`SweepProgram` of a :class:`SweepMLP` trained with Adam (+ proximal L1).

    Args:
      num_outputs: classes (or regression targets).
      hidden_sizes: hidden widths (a tuple).
      learning_rate: Adam's learning rate.
      task: ``"classification"`` or ``"regression"``.
      batch_norm: give the MLP switchable batch-norm layers.

    Returns:
      The :class:`SweepProgram`.
    """
    return _sweep_program(int(num_outputs), tuple(int(s) for s in hidden_sizes), float(learning_rate), task,
                          bool(batch_norm))


def sweep_hparams(members: Sequence[Mapping[str, float]]) -> dict[str, jax.Array]:
    """Stack per-member hyperparameter dicts into the ``hparams`` of a sweep (absent names are 0).

    Example:
      >>> from jaxreg.experiments._common import sweep_hparams
      >>> h = sweep_hparams([{"dropout": 0.5}, {"l2": 1e-3}])
      >>> h["dropout"].tolist(), h["l2"].shape
      ([0.5, 0.0], (2,))
    """
    for member in members:
        unknown = set(member) - set(SWEEP_HPARAMS)
        if unknown:
            raise ValueError(f"unknown sweep hyperparameter(s) {sorted(unknown)}; known: {SWEEP_HPARAMS}.")
    return {name: jnp.asarray([float(m.get(name, 0.0)) for m in members], jnp.float32) for name in SWEEP_HPARAMS}


def member_states(program: SweepProgram, x: jax.Array, seeds: Sequence[int],
                  batch_norm: Sequence[bool] | None = None) -> Any:
    """Stacked initial :class:`jaxreg.TrainState` s, member ``i`` initialized and keyed by ``seeds[i]``.

    Args:
      program: the :class:`SweepProgram`.
      x: a batch of inputs (its first example shapes the parameters).
      seeds: one seed per member (equal seeds give equal initial states).
      batch_norm: per member, whether its batch-norm layers are on (``batch_norm=True`` programs only).

    Returns:
      The stacked states (:func:`jaxreg.stack_members`).
    """
    states = []
    cache: dict[int, Any] = {}
    for i, seed in enumerate(seeds):
        if seed not in cache:
            cache[seed] = program.init(init_key(seed), x[:1])
        variables = cache[seed]
        model_state = {k: v for k, v in variables.items() if k != "params"}
        if batch_norm is not None:
            model_state["switches"] = {"batch_norm": jnp.asarray(bool(batch_norm[i]))}
        states.append(create_train_state(variables["params"], program.optimizer, train_key(seed),
                                         model_state=model_state))
    return stack_members(states)


def train_members(program: SweepProgram, splits: Splits, members: Sequence[Mapping[str, float]], *,
                  seeds: Sequence[int], epochs: int, batch_size: int, batch_norm: Sequence[bool] | None = None,
                  ) -> tuple[Any, list[dict[str, list]]]:
    """Train every member (hyperparameters ``members[i]``, seed ``seeds[i]``) as one vmapped program.

    A thin layer over :func:`jaxreg.fit_members`: validation after every epoch, the training set evaluated
    in evaluation mode when it has at most 10000 examples.

    Returns:
      ``(states, histories)`` of :func:`jaxreg.fit_members`.
    """
    states = member_states(program, splits.train[0], seeds, batch_norm)
    eval_train = int(splits.train[1].shape[0]) <= EVAL_TRAIN_LIMIT
    return fit_members(states, program.make_step, splits.train, epochs=epochs, batch_size=batch_size,
                       hparams=sweep_hparams(members), val_data=splits.validation, eval_step=program.eval_step,
                       eval_train=eval_train)


def member_records(program: SweepProgram, states: Any, histories: Sequence[Mapping[str, list]], splits: Splits,
                   labels: Sequence[str], settings: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One :func:`run_record` per member of a vmapped run (final metrics from one vmapped evaluation)."""
    final = final_metrics(program.member_eval, states, splits)
    params = jax.device_get(states.params)
    skipped = np.asarray(jax.device_get(states.skipped))
    records = []
    for i, label in enumerate(labels):
        member_final = {split: {k: v[i] for k, v in metrics.items()} for split, metrics in final.items()}
        member_params = jax.tree.map(lambda a, i=i: a[i], params)
        records.append(run_record(label, program.task, member_final, member_params, histories[i],
                                  settings=settings[i], skipped=int(skipped[i])))
    return records


# ----------------------------------------------------------------------------------------------------------
# Tables, progress, output
# ----------------------------------------------------------------------------------------------------------

def columns(*specs: tuple[str, str, str]) -> list[Any]:
    """:class:`jaxreg.experiments.report.Column` s from ``(header, key, format_spec)`` triples.

    The first column is left-aligned, the others right-aligned; a format spec such as ``".4f"`` or ``"+.3f"``
    applies to floats, other values print with ``str``.

    Example:
      >>> from jaxreg.experiments._common import columns
      >>> from jaxreg.experiments.report import format_table
      >>> print(format_table([{"a": "x", "b": 0.5}], columns(("name", "a", ""), ("value", "b", ".2f"))))
      | name | value |
      |:-----|------:|
      | x    |  0.50 |
    """
    from jaxreg.experiments.report import Column

    def formatter(spec: str) -> Callable[[Any], str]:
        return lambda value: format(value, spec) if spec and isinstance(value, float) else str(value)

    return [Column(header, key, formatter(spec), "<" if i == 0 else ">")
            for i, (header, key, spec) in enumerate(specs)]


# The per-run table of the classification stories (train/val/test accuracy, gap, test loss).
CLASSIFICATION_COLUMNS = columns(
    ("run", "technique", ""), ("train acc", "train_accuracy", ".4f"), ("val acc", "val_accuracy", ".4f"),
    ("test acc", "test_accuracy", ".4f"), ("gap", "generalization_gap", "+.4f"), ("test loss", "test_loss", ".4f"),
)


def format_table(rows: Sequence[Mapping[str, Any]], table_columns: Sequence[Any]) -> str:
    """:func:`jaxreg.experiments.report.format_table` (a Markdown table, aligned for the terminal)."""
    from jaxreg.experiments.report import format_table as _format_table

    return _format_table(rows, table_columns)


def log(args: argparse.Namespace, message: str) -> None:
    """Print a progress message to stderr unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr, flush=True)


def config_of(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The JSON-ready config of a story: its parsed options without those that only say where or how loudly."""
    from jaxreg.experiments import COMMON_RESULT_EXCLUDES

    config = {k: v for k, v in sorted(vars(args).items())
              if k not in COMMON_RESULT_EXCLUDES and k != "data_dir" and not callable(v)}
    config.update(extra)
    return json.loads(json.dumps(config))


def write_outputs(out: str, result: Mapping[str, Any], *, title: str, report: str,
                  figures: Mapping[str, Any] = ()) -> None:
    """Write ``results.json`` (:func:`jaxreg.experiments.report.write_json`, byte-stable), ``report.md`` and figures.

    Args:
      out: the output directory (created).
      result: JSON-ready results (``config``, ``runs``...).
      title: the report's title.
      report: the Markdown body of ``report.md`` (after the title).
      figures: ``{file name: matplotlib Figure}``; each is saved as a PNG in ``out`` (:func:`jaxreg.experiments.plots.save`,
        no timestamps).
    """
    from jaxreg.experiments import plots
    from jaxreg.experiments.report import write_json

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "results.json"), result)
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(f"# {title}\n\n{report.rstrip()}\n")
    for name, figure in dict(figures).items():
        plots.save(figure, os.path.join(out, name), dpi=figure.dpi)


# ----------------------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no pyplot state, no display needed)
# ----------------------------------------------------------------------------------------------------------


def new_figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.0, dpi: int = 90) -> tuple[Any, list]:
    """A matplotlib ``Figure`` with ``ncols`` side-by-side axes (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def plot_curves(runs: Sequence[Mapping[str, Any]], *, metrics: Sequence[str] = ("accuracy",), title: str = "",
                mark_best: bool = False) -> Any:
    """Train (dashed, evaluation mode) and validation (solid) curves per epoch for each run, one panel per metric.

    Args:
      runs: run records (their ``history``).
      metrics: ``"accuracy"`` and/or ``"loss"`` (a loss is drawn on a log scale).
      title: the figure's title.
      mark_best: mark each run's ``best_epoch`` (early stopping) with a dot on its validation curves.

    Returns:
      The ``Figure``.
    """
    figure, axes = new_figure(len(metrics), width=4.4, height=3.2)
    for ax, metric in zip(axes, metrics):
        for i, run in enumerate(runs):
            history = run["history"]
            color = f"C{i}"
            train_key = f"train_eval_{metric}" if f"train_eval_{metric}" in history else f"train_{metric}"
            epochs = [e + 1 for e in history["epoch"]]
            ax.plot(epochs, as_floats(history.get(train_key, [])), color=color, linestyle="--", linewidth=1.1)
            ax.plot(epochs, as_floats(history.get(f"val_{metric}", [])), color=color, linewidth=1.5,
                    label=run["technique"])
            if mark_best and run.get("best_epoch") is not None:
                best = run["best_epoch"]
                ax.plot([best + 1], [as_floats(history[f"val_{metric}"])[best]], "o", color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric} (dashed: train, solid: val.)", fontsize=9)
        if metric == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def as_floats(values: Sequence[Any]) -> list[float]:
    """``values`` as floats for plotting, None (a non-finite value in JSON) as NaN."""
    return [math.nan if v is None else float(v) for v in values]
