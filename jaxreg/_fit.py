"""The training loop behind :mod:`jaxreg.train`: an epoch as one ``lax.scan``, and ``fit`` over epochs.

Public names are re-exported by :mod:`jaxreg.train` (``jr.make_train_epoch``, ``jr.fit``); see its module
docstring for the model/loss contracts, the randomness streams and donation. This module only needs the
step to be a function ``step(state, x, y, weights=None, value=None) -> (state, metrics)`` over a state with
``params``, ``model_state``, ``opt_state``, ``key``, ``stopper`` fields and a ``replace`` method.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike
from optax.contrib import ReduceLROnPlateauState
from tqdm import tqdm

from jaxreg._typing import KeyArray, MaskOrFn, PyTree
from jaxreg._validate import check_callable, check_choice, check_positive_int
from jaxreg.metrics import generalization_gap, overfitting_score, sparsity, weight_norms
from jaxreg.select import kernel_mask

__all__ = ["make_train_epoch", "fit", "has_plateau", "shuffle_key"]

# fold_in data of the shuffling stream: uint32 max, a value no int32 step number reaches, so the shuffle keys
# never coincide with a step's noise key fold_in(key, step).
_SHUFFLE_STREAM = np.uint32(0xFFFFFFFF)
_INJECT_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)
_MONITORS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")


def shuffle_key(key: KeyArray, epoch: ArrayLike) -> KeyArray:
    """The key that shuffles epoch ``epoch``: ``fold_in(fold_in(key, 2**32 - 1), epoch)``."""
    return jax.random.fold_in(jax.random.fold_in(key, _SHUFFLE_STREAM), epoch)


def _is_schedule_state(node: Any) -> bool:
    return isinstance(node, (ReduceLROnPlateauState, *_INJECT_STATES))


def has_plateau(opt_state: PyTree) -> bool:
    """Whether an optimizer state holds an ``optax.contrib.reduce_on_plateau`` state (checked at trace time)."""
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


def _num_examples(*trees: PyTree) -> int:
    sizes = {np.shape(leaf)[0] for tree in trees for leaf in jax.tree.leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(f"x, y and weights must share their leading (example) axis, got sizes {sorted(sizes)}.")
    return sizes.pop()


def _epoch_means(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Mean of each stacked step metric over the non-skipped steps (NaN if all skipped); ``skipped`` summed."""
    skipped = metrics["skipped"]
    ok = skipped == 0
    num_ok = jnp.sum(ok).astype(jnp.float32)
    out = {"skipped": jnp.sum(skipped)}
    for name, values in metrics.items():
        if name != "skipped":
            total = jnp.sum(jnp.where(ok, values, jnp.zeros_like(values)))
            out[name] = jnp.where(num_ok > 0, total / jnp.maximum(num_ok, 1.0), jnp.nan).astype(values.dtype)
    return out


def make_train_epoch(
    train_step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    *,
    batch_size: int,
    donate: bool = True,
    jit: bool = True,
) -> Callable[..., tuple[Any, dict[str, jax.Array]]]:
    """Build ``epoch(state, x, y, epoch, weights=None, value=None) -> (state, mean_metrics)``: one ``lax.scan``.

    The ``n`` examples are shuffled by ``jax.random.permutation(shuffle_key(state.key, epoch), n)``; the first
    ``n // batch_size * batch_size`` indices of the permutation form the batches, in order, and the last
    ``n % batch_size`` are **dropped** for this epoch (a different subset each epoch), so every batch has the
    same shape and the whole epoch is one compiled program over data already on the device. ``weights`` and
    ``value`` are passed to every step (see :func:`jaxreg.make_train_step`).

    Args:
      train_step: ``step(state, x, y, weights=None, value=None) -> (state, metrics)``, jitted or not
        (:func:`jaxreg.make_train_step`, with ``jit=False`` to avoid a nested jit).
      batch_size: examples per step; an int >= 1 and <= ``n``.
      donate: donate the ``state`` argument of the compiled epoch.
      jit: return the ``jax.jit``-compiled epoch (default) or the plain function (to ``vmap`` over folds).

    Equal arguments return the same function object (a small cache), so its compilations are shared.

    Returns:
      ``epoch(state, x, y, epoch, weights=None, value=None)``; ``x``/``y`` are arrays (or pytrees of arrays)
      with a leading example axis, ``epoch`` an int (pass ``jnp.int32(e)`` to reuse one compilation). The
      metrics are the means of the step metrics over the epoch's non-skipped steps (NaN if every step was
      skipped), except ``skipped``, the number of skipped steps.

    Raises:
      ValueError: if ``batch_size`` is not positive, exceeds ``n``, or the leading axes disagree.
      TypeError: if ``train_step`` is not callable or ``batch_size`` not an int.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> tx = optax.sgd(0.1)
      >>> step = jr.make_train_step(apply_fn, lambda p, y: (p - y) ** 2, tx, jit=False)
      >>> epoch = jr.make_train_epoch(step, batch_size=4)
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      >>> x = jax.random.normal(jax.random.key(1), (10, 3))
      >>> state, metrics = epoch(state, x, x @ jnp.array([1.0, -1.0, 2.0]), jnp.int32(0))
      >>> print(int(state.step), sorted(metrics))   # 10 // 4 = 2 steps; 2 examples dropped
      2 ['grad_norm', 'loss', 'penalty', 'skipped']
    """
    check_callable("train_step", train_step)
    batch_size = check_positive_int("batch_size", batch_size)
    try:
        return _build_epoch_cached(train_step, batch_size, donate, jit)
    except TypeError:  # an unhashable step callable: build an uncached one
        return _build_epoch(train_step, batch_size, donate, jit)


def _build_epoch(train_step: Callable, batch_size: int, donate: bool, jit: bool) -> Callable:
    def train_epoch(state, x, y, epoch, weights=None, value=None):
        n = _num_examples(x, y, weights)
        num_batches = n // batch_size
        if num_batches == 0:
            raise ValueError(f"batch_size must be <= the number of examples {n}, got batch_size = {batch_size}.")
        order = jax.random.permutation(shuffle_key(state.key, epoch), n)
        batches = order[: num_batches * batch_size].reshape(num_batches, batch_size)

        def body(state, idx):
            take = functools.partial(jnp.take, indices=idx, axis=0)
            w = None if weights is None else take(jnp.asarray(weights))
            return train_step(state, jax.tree.map(take, x), jax.tree.map(take, y), w, value)

        state, metrics = jax.lax.scan(body, state, batches)
        return state, _epoch_means(metrics)

    if not jit:
        return train_epoch
    compiled = jax.jit(train_epoch, donate_argnums=(0,) if donate else ())

    @functools.wraps(train_epoch)
    def jitted_train_epoch(state, x, y, epoch, weights=None, value=None):
        return compiled(state, x, y, epoch, weights, value)  # fixed arity: one jit cache entry

    return jitted_train_epoch


# The same arguments give the same (jitted) epoch function, so repeated make_train_epoch / fit calls with one
# step (sweeps, resumed runs, tests) share its compilations.
_build_epoch_cached = functools.lru_cache(maxsize=32)(_build_epoch)


def _split_data(name: str, data: Any) -> tuple[Any, Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise TypeError(f"{name} must be a tuple (x, y) or (x, y, weights), got {name} = {type(data).__name__}.")
    x, y, w = (*data, None) if len(data) == 2 else data
    as_array = functools.partial(jax.tree.map, jnp.asarray)
    return as_array(x), as_array(y), None if w is None else jnp.asarray(w)


def _tracked(state: Any) -> dict[str, PyTree]:
    return {"params": state.params, "model_state": state.model_state}


def _summary(params: PyTree, opt_state: PyTree, norms_mask: MaskOrFn) -> dict[str, jax.Array]:
    out = {"sparsity": sparsity(params, mask=norms_mask)}
    for path, norms in weight_norms(params, mask=norms_mask).items():
        out[f"weight_l1/{path}"] = norms["l1"]
        out[f"weight_l2/{path}"] = norms["l2"]
    out.update(_learning_rate(opt_state))
    return out


# Module-level jits with the (hashable) mask function / stopper as static arguments, so that repeated fit()
# calls reuse their compilations.
_summary_jit = jax.jit(_summary, static_argnames="norms_mask")
_stopper_update_jit = jax.jit(lambda stopper, state, value, tracked: stopper.update(state, value, tracked),
                              static_argnums=0)


def _summarizer(norms_mask: MaskOrFn) -> Callable[[Any], dict[str, jax.Array]]:
    try:
        hash(norms_mask)
        summarize = functools.partial(_summary_jit, norms_mask=norms_mask)
    except TypeError:  # a mask pytree (dict): close over it instead
        summarize = jax.jit(functools.partial(_summary, norms_mask=norms_mask))
    return lambda state: summarize(state.params, state.opt_state)


def epoch_columns(host: dict[str, Any]) -> dict[str, np.ndarray]:
    """One epoch's history entries from its host-side metrics, in history order.

    ``host`` holds ``"train"`` (epoch means), ``"summary"`` (norms, sparsity, learning rate) and optionally
    ``"val"`` and ``"train_eval"`` (evaluation metrics), as numpy arrays: scalars for one model, or stacked
    along a leading member axis for :func:`jaxreg.fit_members`, which shares this so both record alike.
    """
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


def fit(
    state: Any,
    train_step: Callable[..., tuple[Any, dict[str, jax.Array]]],
    train_data: tuple,
    *,
    epochs: int,
    batch_size: int,
    val_data: tuple | None = None,
    eval_step: Callable[..., dict[str, jax.Array]] | None = None,
    early_stopping: Any | None = None,
    monitor: str = "val_loss",
    eval_train: bool = False,
    norms_mask: MaskOrFn = kernel_mask,
    initial_epoch: int = 0,
    progress: bool = True,
    on_epoch_end: Callable[[int, Any, dict[str, list]], Any] | None = None,
) -> tuple[Any, dict[str, list]]:
    """Train for epochs ``initial_epoch .. epochs - 1`` and record a per-epoch history.

    Each epoch is one compiled :func:`make_train_epoch` call (shuffled, last partial batch dropped), then an
    evaluation on ``val_data``, the history record, the early-stopping update and ``on_epoch_end``; the
    metrics come to the host once per epoch. Same state (key) and data give bitwise identical params and history.

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

    Early stopping: ``early_stopping.update`` runs on ``history[monitor]`` each epoch, tracking
    ``{"params", "model_state"}`` in ``state.stopper`` (initialized here if None); the loop breaks when it
    says stop, and with ``restore_best`` the best epoch's params and model state are put back at the end.
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
      early_stopping: an optional :class:`jaxreg.EarlyStopping` (its ``mode`` must suit ``monitor``).
      monitor: the history key early stopping watches: ``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``
        or ``"train_accuracy"``.
      eval_train: also evaluate the training set in evaluation mode after each epoch.
      norms_mask: the leaves whose norms and sparsity are recorded (default ``jr.kernel_mask``).
      initial_epoch: the first epoch number (to resume a checkpointed run with the same shuffles).
      progress: show a tqdm bar on stderr (only when stderr is a terminal).
      on_epoch_end: optional ``callback(epoch, state, history)`` after each epoch's record. The ``state`` it
        sees is donated to the next epoch: copy (``jax.device_get``) or finish saving whatever it keeps.

    Returns:
      ``(state, history)``.

    Raises:
      ValueError: on bad ``epochs``/``batch_size``/``initial_epoch``/``monitor``, ``val_data`` without
        ``eval_step``, or a ``val_*`` monitor without ``val_data``.
      TypeError: if ``train_data``/``val_data`` is not a 2- or 3-tuple or a callable argument is not callable.

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
    check_callable("train_step", train_step)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    initial_epoch = check_positive_int("initial_epoch", initial_epoch, minimum=0)
    check_choice("monitor", monitor, _MONITORS)
    if on_epoch_end is not None:
        check_callable("on_epoch_end", on_epoch_end)
    x, y, w = _split_data("train_data", train_data)
    if val_data is not None:
        xv, yv, wv = _split_data("val_data", val_data)
    if (val_data is not None or eval_train) and eval_step is None:
        raise ValueError("eval_step is required with val_data or eval_train; build one with jr.make_eval_step.")
    if early_stopping is not None and monitor.startswith("val_") and val_data is None:
        raise ValueError(f"monitor = {monitor!r} needs val_data.")

    train_epoch = make_train_epoch(train_step, batch_size=batch_size)
    summarize = _summarizer(norms_mask)
    if early_stopping is not None:
        stopper_update = functools.partial(_stopper_update_jit, early_stopping)
        if state.stopper is None:
            # Fresh buffers: the stopper is donated with the state and must alias neither params nor itself.
            stopper = early_stopping.init(_tracked(state))
            state = state.replace(stopper=jax.tree.map(lambda a: jnp.array(a, copy=True), stopper))

    plateau_value = None
    if val_data is not None and has_plateau(state.opt_state):
        plateau_value = eval_step(state, xv, yv, wv)["loss"]

    history: dict[str, list] = {}
    if early_stopping is not None and bool(state.stopper.should_stop):
        epochs = initial_epoch  # a restored run that had already stopped trains no further
    show = progress and sys.stderr.isatty()
    bar = tqdm(range(initial_epoch, epochs), desc="fit", unit="epoch", file=sys.stderr, disable=not show)
    for epoch in bar:
        state, train_metrics = train_epoch(state, x, y, jnp.int32(epoch), w, plateau_value)
        pending = {"train": train_metrics, "summary": summarize(state)}
        if val_data is not None:
            pending["val"] = eval_step(state, xv, yv, wv)
            if plateau_value is not None:
                plateau_value = pending["val"]["loss"]
        if eval_train:
            pending["train_eval"] = eval_step(state, x, y, w)
        host = jax.device_get(pending)

        record: dict[str, Any] = {"epoch": epoch}
        record.update({name: value.item() for name, value in epoch_columns(host).items()})
        for name, value in record.items():
            history.setdefault(name, []).append(value)

        stop = False
        if early_stopping is not None:
            if monitor not in record:
                raise ValueError(f"monitor = {monitor!r} is not recorded; history has {sorted(record)}.")
            state = state.replace(stopper=stopper_update(state.stopper, record[monitor], _tracked(state)))
            stop = bool(state.stopper.should_stop)
        bar.set_postfix({k: f"{record[k]:.4g}" for k in ("train_loss", "val_loss") if k in record})
        if on_epoch_end is not None:
            on_epoch_end(epoch, state, history)
        if stop:
            break
    bar.close()

    if early_stopping is not None and early_stopping.restore_best:
        best = early_stopping.final_params(state.stopper, _tracked(state))
        state = state.replace(params=best["params"], model_state=best["model_state"])
    return state, history
