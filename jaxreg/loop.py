"""The training loop above the step (floor 6): ``fit`` and ``fit_members``, one epoch program for both.

One loop serves one model and ``K`` models. Every epoch is ONE compiled program per member: the scanned
training epoch (:func:`jaxreg.make_train_epoch`), the weight summary (norms, sparsity, learning rate), the
evaluations, and the early-stopping update, all inside ``jax.jit``. :func:`fit` runs that program on one
:class:`jaxreg.TrainState`; :func:`fit_members` runs the same program under ``jax.vmap`` on states stacked
along a member axis (:func:`jaxreg.stack_members`; k folds and sweeps: :func:`jaxreg.kfold_fit`,
:func:`jaxreg.sweep_fit`), so member ``i`` computes what ``fit`` computes for it alone, to float tolerance.
The host driver between epochs is shared too: it moves the epoch's metrics to the host once, appends the
history records, runs ``on_epoch_end`` and the progress report (:mod:`jaxreg.progress`), and ends when every
member's stopper says stop.

The compiled epoch is a module-level ``jax.jit`` whose static argument is the loop's configuration (step,
evaluation, stopper, batch size, mask...), so JAX's own compilation cache shares it between ``fit`` calls with
the same step (build the step once and reuse it); the loop keeps no cache of its own. JAX's cache holds each
configuration (the step's closure included) for the process' lifetime: a long search that builds thousands
of distinct steps can free them with ``jax.clear_caches()``.

**Randomness.** Epoch ``e`` is shuffled by :func:`jaxreg.shuffle_key` ``(state.key, e)`` (:mod:`jaxreg.epoch`),
a stream the steps' noise keys ``fold_in(state.key, step)`` never meet, so same key, same data -> bitwise the
same params and history.

**Early stopping and plateaus.** ``state.stopper`` (an :class:`jaxreg.EarlyStoppingState` tracking
``{"params", "model_state"}``) is the loop's field of the state: the step never touches it, the epoch program
updates it from the monitored metric, and a member whose stopper said stop is frozen (its whole state
selected back) while the others train on. ``optax.contrib.reduce_on_plateau`` in the optimizer gets the
latest validation loss as every step's ``value`` (see :func:`fit`).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike
from optax.contrib import ReduceLROnPlateauState

from jaxreg._typing import MaskOrFn, PyTree
from jaxreg._validate import check_callable, check_choice, check_positive_int
from jaxreg.early_stopping import EarlyStopping
from jaxreg.averaging import warn_if_unaveraged
from jaxreg.epoch import make_train_epoch, num_examples
from jaxreg.members import num_members
from jaxreg.metrics import generalization_gap, overfitting_score, sparsity, weight_norms
from jaxreg.progress import EpochProgress
from jaxreg.select import kernel_mask
from jaxreg.train import TrainState

__all__ = ["fit", "fit_members", "has_plateau"]

_INJECT_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
# monitor -> (group of the epoch program's output, metric name)
_MONITOR_SOURCES = {
    "val_loss": ("val", "loss"),
    "val_accuracy": ("val", "accuracy"),
    "train_loss": ("train", "loss"),
    "train_accuracy": ("train", "accuracy"),
}

History = dict[str, list]
"""Per-epoch lists of Python numbers, keyed by metric name (see :func:`fit`)."""


def _is_schedule_state(node: Any) -> bool:
    return isinstance(node, (ReduceLROnPlateauState, *_INJECT_STATES))


def has_plateau(opt_state: PyTree) -> bool:
    """Whether an optimizer state holds an ``optax.contrib.reduce_on_plateau`` state (checked at trace time).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> tx = optax.chain(optax.sgd(0.1), optax.contrib.reduce_on_plateau())
      >>> jr.has_plateau(tx.init({"w": jnp.zeros(2)})), jr.has_plateau(optax.sgd(0.1).init({"w": jnp.zeros(2)}))
      (True, False)
    """
    nodes = jax.tree.leaves(opt_state, is_leaf=_is_schedule_state)
    return any(isinstance(node, ReduceLROnPlateauState) for node in nodes)


def _learning_rate(opt_state: PyTree) -> dict[str, jax.Array]:
    """``learning_rate`` (inject_hyperparams value times plateau scale) and/or ``lr_scale``, when present."""
    lr = scale = None
    for node in jax.tree.leaves(opt_state, is_leaf=_is_schedule_state):
        if isinstance(node, _INJECT_STATES) and lr is None and "learning_rate" in node.hyperparams:
            lr = jnp.asarray(node.hyperparams["learning_rate"]).astype(jnp.float32)
        elif isinstance(node, ReduceLROnPlateauState) and scale is None:
            scale = jnp.asarray(node.scale).astype(jnp.float32)
    out = {}
    if lr is not None:
        out["learning_rate"] = lr if scale is None else lr * scale
    if scale is not None:
        out["lr_scale"] = scale
    return out


# ----------------------------------------------------------------------------------------------------------
# The epoch program, shared by fit (one member) and fit_members (vmapped)
# ----------------------------------------------------------------------------------------------------------


class _StaticKey:
    """An unhashable static value (a mask pytree, a callable dataclass) as a jit cache key.

    Pytrees of hashable leaves compare by content (``(treedef, leaves)``), so equal masks share one compiled
    program and a mask mutated in place between calls gets its own; anything else compares by identity.
    """

    def __init__(self, value: Any):
        self.value = value
        leaves, treedef = jax.tree.flatten(value)
        try:
            self._key: Any = (treedef, tuple(leaves))
            hash(self._key)
        except TypeError:
            self._key = id(value)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _StaticKey) and other._key == self._key


def _static(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return _StaticKey(value)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _StaticKey) else value


@dataclasses.dataclass(frozen=True)
class _LoopConfig:
    """Everything static about a loop: JAX compiles one epoch program per distinct config."""

    train_step: Callable
    has_hparams: bool
    batch_size: int
    eval_step: Callable | None
    has_val: bool
    eval_train: bool
    early_stopping: Any
    monitor: str
    norms_mask: Any


def _summary(params: PyTree, opt_state: PyTree, norms_mask: MaskOrFn) -> dict[str, jax.Array]:
    out = {"sparsity": sparsity(params, mask=norms_mask)}
    for path, norms in weight_norms(params, mask=norms_mask).items():
        out[f"weight_l1/{path}"] = norms["l1"]
        out[f"weight_l2/{path}"] = norms["l2"]
    out.update(_learning_rate(opt_state))
    return out


def _tracked(state: TrainState) -> dict[str, PyTree]:
    return {"params": state.params, "model_state": state.model_state}


def _member_epoch(cfg: _LoopConfig, freeze: bool, state, hparams, train_w, val_w, value, x, y, xv, yv, epoch):
    """One epoch of one member: train, summarize, evaluate, update its stopper; a stopped member is frozen."""
    train_step, eval_step = _unwrap(cfg.train_step), _unwrap(cfg.eval_step)
    step = train_step(hparams) if cfg.has_hparams else train_step
    train_epoch = make_train_epoch(step, batch_size=cfg.batch_size, jit=False)
    new_state, train_metrics = train_epoch(state, x, y, epoch, train_w, value)
    out = {"train": train_metrics, "summary": _summary(new_state.params, new_state.opt_state,
                                                       _unwrap(cfg.norms_mask))}
    if cfg.has_val:
        out["val"] = eval_step(new_state, xv, yv, val_w)
    if cfg.eval_train:
        out["train_eval"] = eval_step(new_state, x, y, train_w)
    if cfg.early_stopping is not None:
        group, name = _MONITOR_SOURCES[cfg.monitor]
        if name not in out.get(group, {}):
            raise ValueError(f"monitor = {cfg.monitor!r} is not recorded (no {name} in the {group} metrics); "
                             "accuracy is recorded only for integer labels and (..., classes) outputs.")
        stopper = cfg.early_stopping.update(new_state.stopper, out[group][name], _tracked(new_state))
        new_state = new_state.replace(stopper=stopper)
        if freeze:
            # A member whose stopper already said stop is frozen: its whole state (params, optimizer, stopper,
            # step counter) is selected back, as if its own loop had ended. (fit alone just stops looping.)
            frozen = state.stopper.should_stop
            new_state = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state, new_state)
    return new_state, out


_IN_AXES = (0, 0, 0, 0, 0, None, None, None, None, None)  # per member: state, hparams, weights, value


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2,))
def _epoch_program(cfg: _LoopConfig, vmapped: bool, state, hparams, train_w, val_w, value, x, y, xv, yv, epoch):
    member = functools.partial(_member_epoch, cfg, vmapped)
    if vmapped:
        member = jax.vmap(member, in_axes=_IN_AXES)
    return member(state, hparams, train_w, val_w, value, x, y, xv, yv, epoch)


def _epoch_columns(host: dict[str, Any]) -> dict[str, np.ndarray]:
    """One epoch's history entries (arrays with a leading member axis) from the program's host-side output."""
    columns: dict[str, np.ndarray] = {}
    for name, value in host["train"].items():
        columns[name if name in ("grad_norm", "skipped") else f"train_{name}"] = np.asarray(value)
    for name, value in host.get("train_eval", {}).items():
        columns[f"train_eval_{name}"] = np.asarray(value)
    for name, value in host.get("val", {}).items():
        columns[f"val_{name}"] = np.asarray(value)
    if "val" in host:
        ref = "train_eval" if "train_eval" in host else "train"
        if "val_accuracy" in columns and f"{ref}_accuracy" in columns:
            gap = generalization_gap(columns[f"{ref}_accuracy"], columns["val_accuracy"])
        else:
            gap = generalization_gap(columns[f"{ref}_loss"], columns["val_loss"], higher_is_better=False)
        columns["generalization_gap"] = np.asarray(gap)
        columns["overfitting_score"] = np.asarray(overfitting_score(columns[f"{ref}_loss"], columns["val_loss"]))
    columns.update({name: np.asarray(value) for name, value in host["summary"].items()})
    return columns


def _run_loop(cfg: _LoopConfig, states: TrainState, *, vmapped: bool, num: int, hparams, train_w, val_w,
              x, y, xv, yv, epochs: int, initial_epoch: int, progress: bool, on_epoch_end, callback_histories):
    """The host driver shared by :func:`fit` and :func:`fit_members`; returns ``(states, histories)``."""
    each = jax.vmap if vmapped else (lambda fn, **_: fn)
    stopping = cfg.early_stopping
    if stopping is not None and states.stopper is None:
        # init copies what it tracks (no aliased buffers), so the state can still be donated.
        states = states.replace(stopper=each(stopping.init)(_tracked(states)))

    value = None
    if cfg.has_val and has_plateau(states.opt_state):
        # Every step of epoch e gets the validation loss after epoch e - 1 (before training, for the first).
        in_axes = (0, None, None, 0 if val_w is not None else None)
        value = each(_unwrap(cfg.eval_step), in_axes=in_axes)(states, xv, yv, val_w)["loss"]

    histories: list[History] = [{} for _ in range(num)]
    active = np.ones(num, dtype=bool)
    if stopping is not None:  # a stopper left in the state by an earlier run does not stop this one
        active = ~np.atleast_1d(np.asarray(jax.device_get(states.stopper.should_stop)))
    epoch_range = range(initial_epoch, epochs)
    report = EpochProgress(progress, epoch_range, "fit_members" if vmapped else "fit",
                           members=num if vmapped else None)
    for epoch in epoch_range:
        if not active.any():
            break
        states, out = _epoch_program(cfg, vmapped, states, hparams, train_w, val_w, value, x, y, xv, yv,
                                     jnp.int32(epoch))
        if value is not None:
            value = out["val"]["loss"]
        stopped = None if stopping is None else states.stopper.should_stop
        host, stopped = jax.device_get((out, stopped))
        columns = _epoch_columns(host if vmapped else jax.tree.map(lambda a: np.asarray(a)[None], host))
        trained = np.flatnonzero(active)
        for i in trained:
            histories[i].setdefault("epoch", []).append(epoch)
            for name, values in columns.items():
                histories[i].setdefault(name, []).append(values[i].item())
        if stopped is not None:
            active = ~np.atleast_1d(np.asarray(stopped))
        report.update(epoch, columns, trained)
        if on_epoch_end is not None:
            on_epoch_end(epoch, states, callback_histories(histories))
    report.close()

    if stopping is not None and stopping.restore_best:
        best = each(stopping.final_params)(states.stopper, _tracked(states))
        states = states.replace(params=best["params"], model_state=best["model_state"])
    _warn_skipped(histories, steps_per_epoch=num_examples("train_data", x, y) // cfg.batch_size, vmapped=vmapped)
    warn_if_unaveraged(states, stacklevel=4)
    return states, histories


def _warn_skipped(histories: list[History], *, steps_per_epoch: int, vmapped: bool) -> None:
    """One RuntimeWarning per loop call when steps were skipped for a non-finite loss or gradient."""
    parts = []
    for i, history in enumerate(histories):
        skipped = history.get("skipped", [])
        if any(skipped):
            first = history["epoch"][next(e for e, count in enumerate(skipped) if count)]
            who = f"member {i}: " if vmapped else ""
            parts.append(f"{who}{int(sum(skipped))} of {len(skipped) * steps_per_epoch} steps (the first in epoch "
                         f"{first})")
    if parts:
        warnings.warn(
            f"{'fit_members' if vmapped else 'fit'} skipped {'; '.join(parts)} because the loss or a gradient was "
            "not finite; their updates were not applied. Check the data for NaN/inf and lower the learning rate.",
            RuntimeWarning, stacklevel=4)  # the caller of fit / fit_members


def _check_loop_args(train_step, epochs, batch_size, initial_epoch, monitor, on_epoch_end, eval_step, has_val,
                     eval_train, early_stopping) -> tuple[int, int, int, EarlyStopping | None]:
    check_callable("train_step", train_step)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    initial_epoch = check_positive_int("initial_epoch", initial_epoch, minimum=0)
    check_choice("monitor", monitor, tuple(_MONITOR_SOURCES))
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be <= epochs = {epochs}, got initial_epoch = {initial_epoch}.")
    if on_epoch_end is not None:
        check_callable("on_epoch_end", on_epoch_end)
    if eval_step is not None:
        check_callable("eval_step", eval_step)
    if (has_val or eval_train) and eval_step is None:
        raise ValueError("eval_step is required with val_data or eval_train; build one with jr.make_eval_step.")
    if early_stopping is not None:
        if not isinstance(early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping must be a jr.EarlyStopping, got early_stopping = {early_stopping!r}.")
        if monitor.startswith("val_") and not has_val:
            raise ValueError(f"monitor = {monitor!r} needs val_data.")
        early_stopping = early_stopping.for_monitor(monitor)  # mode="auto": max for accuracies, min for losses
    return epochs, batch_size, initial_epoch, early_stopping


def _data(name: str, data: Any, *, weights_allowed: bool) -> tuple[Any, Any, jax.Array | None]:
    sizes = (2, 3) if weights_allowed else (2,)
    if not isinstance(data, (tuple, list)) or len(data) not in sizes:
        got = type(data).__name__ + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        shapes = "(x, y) or (x, y, weights)" if weights_allowed else (
            "(x, y) shared by every member (per-member weights go in their own argument)")
        raise TypeError(f"{name} must be a tuple {shapes}, got {name} = {got}.")
    x, y, w = (*data, None) if len(data) == 2 else data
    as_array = functools.partial(jax.tree.map, jnp.asarray)
    x, y, w = as_array(x), as_array(y), None if w is None else jnp.asarray(w)
    num_examples(name, x, y, w)
    return x, y, w


def fit(
    state: TrainState,
    train_step: Callable[..., tuple[TrainState, dict[str, jax.Array]]],
    train_data: tuple,
    *,
    epochs: int,
    batch_size: int,
    val_data: tuple | None = None,
    eval_step: Callable[..., dict[str, jax.Array]] | None = None,
    early_stopping: EarlyStopping | None = None,
    monitor: str = "val_loss",
    eval_train: bool = False,
    norms_mask: MaskOrFn = kernel_mask,
    initial_epoch: int = 0,
    hparams: PyTree | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, TrainState, History], Any] | None = None,
) -> tuple[TrainState, History]:
    """Train for epochs ``initial_epoch .. epochs - 1`` and record a per-epoch history.

    Each epoch is one compiled program (the loop's; see the module docstring): the shuffled, scanned training
    epoch (:func:`jaxreg.make_train_epoch`, last partial batch dropped), the evaluation on ``val_data``, the weight
    summary and the early-stopping update. The metrics come to the host once per epoch for the history record
    and ``on_epoch_end``. Same state (key) and data give bitwise identical params and history.

    History (``dict`` of per-epoch lists of Python numbers): ``epoch``; ``train_loss``, ``train_penalty``,
    ``train_accuracy`` (classification), ``grad_norm``: means over the epoch's steps, measured in training
    mode with the noise on; ``skipped``: non-finite steps this epoch; with ``val_data``: ``val_loss``,
    ``val_accuracy``, ``generalization_gap`` (train accuracy - val accuracy for classification, else val loss -
    train loss; positive = overfitting) and ``overfitting_score`` (val loss / train loss); with
    ``eval_train``: ``train_eval_loss``/``train_eval_accuracy`` (the training set in evaluation mode, which
    the gap then uses); ``sparsity`` and ``weight_l1/<path>``, ``weight_l2/<path>`` (L1 and Euclidean norms)
    of the leaves ``norms_mask`` selects; ``learning_rate`` when the optimizer is an
    ``optax.inject_hyperparams`` with a ``learning_rate`` (times the plateau scale, if any) and ``lr_scale``
    when it holds ``optax.contrib.reduce_on_plateau``.

    Early stopping: ``early_stopping.update`` runs on the ``monitor`` metric inside the epoch program,
    tracking ``{"params", "model_state"}`` in ``state.stopper`` (initialized here if None); the loop ends when
    it says stop, and with ``restore_best`` the best epoch's params and model state are put back at the end.
    Reduce on plateau: when the optimizer state holds a ``ReduceLROnPlateauState`` and ``val_data`` is given,
    every step of epoch ``e`` gets ``value`` = the validation loss after epoch ``e - 1`` (before training, for
    the first), so set ``accumulation_size`` to the steps per epoch; without ``val_data`` the steps pass
    their own training loss.

    Args:
      state: a :class:`jaxreg.TrainState`; donated to the compiled epoch (do not reuse the object you pass).
      train_step: from :func:`jaxreg.make_train_step` (jitted or ``jit=False``).
      train_data: ``(x, y)`` or ``(x, y, weights)`` with a leading example axis; moved to the device once.
      epochs: the epoch number to stop before (Keras' ``epochs``); an int >= 1.
      batch_size: examples per step.
      val_data: optional ``(x, y)`` or ``(x, y, weights)`` evaluated in one batch after every epoch.
      eval_step: from :func:`jaxreg.make_eval_step`; required with ``val_data`` or ``eval_train``.
      early_stopping: an optional :class:`jaxreg.EarlyStopping`; ``mode="auto"`` follows ``monitor``.
      monitor: the history key early stopping watches: ``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``
        or ``"train_accuracy"``.
      eval_train: also evaluate the training set in evaluation mode after each epoch.
      norms_mask: the leaves whose norms and sparsity are recorded (default ``jr.kernel_mask``).
      initial_epoch: the first epoch number (to resume a checkpointed run with the same shuffles).
      hparams: optional pytree of arrays; then ``train_step`` is a function ``hparams -> step`` called inside
        the compiled epoch, so the hyperparameters are traced and one compilation serves every value (as
        :func:`fit_members`' ``hparams``, without the member axis).
      progress: report every epoch (:mod:`jaxreg.progress`): a tqdm bar when stderr is a terminal and tqdm is
        installed, else one ``INFO`` line per epoch on the ``jaxreg`` logger (shown once logging is
        configured); False: nothing.
      on_epoch_end: optional ``callback(epoch, state, history)`` after each epoch's record. The ``state`` it
        sees is donated to the next epoch: copy (``jax.device_get``) or finish saving whatever it keeps.

    Returns:
      ``(state, history)``.

    Raises:
      ValueError: on bad ``epochs``/``batch_size``/``initial_epoch``/``monitor``, ``val_data`` without
        ``eval_step``, a ``val_*`` monitor without ``val_data``, or data whose leading axes disagree.
      TypeError: if ``state`` is not a :class:`jaxreg.TrainState`, ``early_stopping`` not a
        :class:`jaxreg.EarlyStopping`, ``train_data``/``val_data`` not a 2- or 3-tuple, or a callable argument
        not callable.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
      >>> state = jr.create_train_state({"w": jnp.zeros((3, 1))}, tx, jax.random.key(0))
      >>> x = jax.random.normal(jax.random.key(1), (32, 3))
      >>> y = x @ jnp.array([[1.0], [-1.0], [0.5]])
      >>> state, history = jr.fit(state, jr.make_train_step(apply_fn, loss_fn, tx), (x, y), epochs=3,
      ...                         batch_size=8, val_data=(x, y), eval_step=jr.make_eval_step(apply_fn, loss_fn),
      ...                         early_stopping=jr.EarlyStopping(patience=2), progress=False)
      >>> sorted(history)  # doctest: +NORMALIZE_WHITESPACE
      ['epoch', 'generalization_gap', 'grad_norm', 'learning_rate', 'overfitting_score', 'skipped', 'sparsity',
       'train_loss', 'train_penalty', 'val_loss', 'weight_l1/w', 'weight_l2/w']
      >>> history["epoch"], history["val_loss"][-1] < history["val_loss"][0]
      ([0, 1, 2], True)
    """
    epochs, batch_size, initial_epoch, early_stopping = _check_loop_args(
        train_step, epochs, batch_size, initial_epoch, monitor, on_epoch_end, eval_step, val_data is not None,
        eval_train, early_stopping)
    if not isinstance(state, TrainState):
        raise TypeError(f"state must be a jr.TrainState (jr.create_train_state), got {type(state).__name__}.")
    x, y, w = _data("train_data", train_data, weights_allowed=True)
    xv = yv = wv = None
    if val_data is not None:
        xv, yv, wv = _data("val_data", val_data, weights_allowed=True)
    if hparams is not None:
        hparams = jax.tree.map(jnp.asarray, hparams)
    cfg = _LoopConfig(_static(train_step), hparams is not None, batch_size, _static(eval_step), val_data is not None,
                      bool(eval_train), early_stopping, monitor, _static(norms_mask))
    state, histories = _run_loop(
        cfg, state, vmapped=False, num=1, hparams=hparams, train_w=w, val_w=wv, x=x, y=y, xv=xv, yv=yv,
        epochs=epochs, initial_epoch=initial_epoch, progress=progress, on_epoch_end=on_epoch_end,
        callback_histories=lambda histories: histories[0])
    return state, histories[0]


def fit_members(
    states: TrainState,
    train_step: Callable[..., Any],
    train_data: tuple,
    *,
    epochs: int,
    batch_size: int,
    hparams: PyTree | None = None,
    train_weights: ArrayLike | None = None,
    val_data: tuple | None = None,
    val_weights: ArrayLike | None = None,
    eval_step: Callable[..., dict[str, jax.Array]] | None = None,
    early_stopping: EarlyStopping | None = None,
    monitor: str = "val_loss",
    eval_train: bool = False,
    norms_mask: MaskOrFn = kernel_mask,
    initial_epoch: int = 0,
    progress: bool = False,
    on_epoch_end: Callable[[int, TrainState, list[History]], Any] | None = None,
) -> tuple[TrainState, list[History]]:
    """Train ``K`` models at once: :func:`fit`'s epoch program under ``jax.vmap``, one compilation for all.

    Each member has its own stacked :class:`jaxreg.TrainState` (params, optimizer state, key, early stopper),
    its own hyperparameters (``hparams``, traced inside the program) and its own per-example weights (k-fold
    masks); all members share the data, which crosses to the device once. Member ``i`` does exactly what
    ``jr.fit(member_state_i, step_i, (x, y, train_weights[i]), val_data=(xv, yv, val_weights[i]), ...)``
    does, to float tolerance (a batched matmul may sum in another order): the same shuffles (from its own
    key), noise, steps, history and early-stopping decisions. A member whose stopper says stop is frozen
    (a ``jnp.where`` select: its params, optimizer state and stopper stop changing) while the others go on;
    the loop ends when every member has stopped or after ``epochs``. With ``restore_best`` each member's
    best params are put back at the end, as :func:`jaxreg.fit` does.

    Hyperparameters are traced: ``train_step(hparams_i)`` is called *inside* the vmapped program with
    member ``i``'s slice of ``hparams``, so a penalty coefficient or a dropout rate is an array, not a Python
    constant, and one compilation serves every value. Build the step there with ``jit=False``::

        def make_step(h):
            apply_fn = jr.linen_apply(model, call_args={"rate": h["dropout"]})  # a model taking a traced rate
            return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, h["l2"], jr.kernel_mask)],
                                      jit=False)

    Per-member weights (``train_weights``) multiply each example's loss, so a fold's validation examples still
    sit in the shuffled batches with weight 0: a batch holds about ``batch_size * (k - 1) / k`` training
    examples of a fold, not ``batch_size``.

    Args:
      states: the members' states stacked along a leading axis of length ``K`` (:func:`jaxreg.stack_members`);
        donated to the compiled program. Stoppers are initialized here (per member) when ``states.stopper``
        is None and ``early_stopping`` is given.
      train_step: a step ``step(state, x, y, weights=None, value=None)`` (:func:`jaxreg.make_train_step`,
        preferably ``jit=False``); when ``hparams`` is given, a function ``hparams -> step`` instead.
      train_data: ``(x, y)`` shared by all members, with a leading example axis of length ``n``.
      epochs: the epoch number to stop before; an int >= 1.
      batch_size: examples per step (the last partial batch of each shuffled epoch is dropped).
      hparams: optional pytree whose leaves have a leading member axis ``K`` (e.g. ``{"l2": (K,) array}``).
      train_weights: optional ``(K, n)`` per-member example weights (bool k-fold masks become 0/1 floats).
      val_data: optional ``(x_val, y_val)`` shared by all members, evaluated after every epoch.
      val_weights: optional ``(K, n_val)`` per-member validation weights (``~masks`` for k folds).
      eval_step: ``evaluate(state, x, y, weights=None)`` from :func:`jaxreg.make_eval_step` (any ``jit``),
        the same for every member; required with ``val_data`` or ``eval_train``.
      early_stopping: an optional :class:`jaxreg.EarlyStopping` applied to every member separately
        (``mode="auto"`` follows ``monitor``).
      monitor: the history key the stoppers watch: ``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``,
        ``"train_accuracy"``.
      eval_train: also evaluate each member's (weighted) training set in evaluation mode after each epoch.
      norms_mask: the leaves whose norms and sparsity are recorded, as in :func:`jaxreg.fit`.
      initial_epoch: the first epoch number (to resume a checkpointed run with the same shuffles).
      progress: report every epoch (:mod:`jaxreg.progress`): a tqdm bar when stderr is a terminal and tqdm is
        installed, else one ``INFO`` line per epoch on the ``jaxreg`` logger (shown once logging is
        configured); False: nothing.
      on_epoch_end: optional ``callback(epoch, states, histories)`` after each epoch; ``states`` is donated to
        the next epoch (copy or finish saving what you keep), e.g. a :mod:`jaxreg.checkpoint` hook.

    Returns:
      ``(states, histories)``: the final states, stacked (:func:`jaxreg.unstack_members` splits them), and a list of
      ``K`` history dicts with the keys and meaning of :func:`jaxreg.fit`'s, member ``i``'s ending with the
      epoch at which its stopper said stop.

    Raises:
      ValueError: if ``states`` is not stacked along a member axis, a per-member argument's leading length is
        not ``K``, a weight array has the wrong shape, or as :func:`jaxreg.fit` for the other arguments.
      TypeError: if ``states`` is not a (stacked) :class:`jaxreg.TrainState`, ``train_data``/``val_data`` is
        not a 2-tuple, or as :func:`jaxreg.fit`.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> def make_step(h):   # the L2 coefficient arrives traced, one value per member
      ...     return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, h["l2"])], jit=False)
      >>> x = jax.random.normal(jax.random.key(1), (64, 3))
      >>> y = x @ jnp.array([1.0, -1.0, 0.5])
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      >>> states, histories = jr.fit_members(
      ...     jr.stack_members([state] * 3), make_step, (x, y), epochs=5, batch_size=16,
      ...     hparams={"l2": jnp.array([0.0, 0.1, 1.0])})
      >>> norms = jnp.linalg.norm(states.params["w"], axis=1)   # stronger L2, smaller weights
      >>> bool(norms[0] > norms[1] > norms[2]), len(histories), histories[0]["epoch"]
      (True, 3, [0, 1, 2, 3, 4])
    """
    epochs, batch_size, initial_epoch, early_stopping = _check_loop_args(
        train_step, epochs, batch_size, initial_epoch, monitor, on_epoch_end, eval_step, val_data is not None,
        eval_train, early_stopping)
    if val_weights is not None and val_data is None:
        raise ValueError("val_weights needs val_data.")
    if not isinstance(states, TrainState):
        raise TypeError(f"states must be jr.TrainStates stacked by jr.stack_members, got {type(states).__name__}.")
    if np.ndim(states.step) != 1:
        raise ValueError(
            "states must be TrainStates stacked along a leading member axis (jr.stack_members), got step of "
            f"shape {np.shape(getattr(states, 'step', None))}."
        )
    num = int(np.shape(states.step)[0])
    num_members("states", states, num)
    if hparams is not None:
        num_members("hparams", hparams, num)
    x, y, _ = _data("train_data", train_data, weights_allowed=False)
    train_w = _member_weights("train_weights", train_weights, num, num_examples("train_data", x, y))
    xv = yv = val_w = None
    if val_data is not None:
        xv, yv, _ = _data("val_data", val_data, weights_allowed=False)
        val_w = _member_weights("val_weights", val_weights, num, num_examples("val_data", xv, yv))
    cfg = _LoopConfig(_static(train_step), hparams is not None, batch_size, _static(eval_step),
                      val_data is not None, bool(eval_train), early_stopping, monitor, _static(norms_mask))
    return _run_loop(
        cfg, states, vmapped=True, num=num, hparams=hparams, train_w=train_w, val_w=val_w, x=x, y=y, xv=xv,
        yv=yv, epochs=epochs, initial_epoch=initial_epoch, progress=progress, on_epoch_end=on_epoch_end,
        callback_histories=lambda histories: histories)


def _member_weights(name: str, weights: ArrayLike | None, num: int, count: int) -> jax.Array | None:
    if weights is None:
        return None
    w = jnp.asarray(weights)
    if w.shape != (num, count):
        raise ValueError(f"{name} must have shape (num_members, num_examples) = ({num}, {count}), got shape {w.shape}.")
    return w.astype(jnp.float32) if w.dtype == jnp.bool_ else w
