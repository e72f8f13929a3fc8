"""Orbax checkpoints of a training run, and resuming it bit for bit (floor 6; ``jr.checkpoint``, lazily loaded).

A checkpoint is the whole :class:`jaxreg.TrainState` (params, model state, optimizer state, root key, step
counters, early-stopping state) plus the history so far, written by ``orbax.checkpoint`` as one composite
step: the arrays with ``StandardSave`` (OCDBT/tensorstore), the history with ``JsonSave``. Nothing is
pickled. Typed ``jax.random`` keys are stored as their ``jax.random.key_data`` and re-wrapped with the
template's key implementation on restore.

Writing is atomic: orbax writes a step into a temporary directory and renames it into place when complete
(saving is synchronous, so the state the hook saw is fully written before the next epoch donates it). A
process killed at any moment (SIGKILL included, even in the middle of a save) leaves the last complete
checkpoints intact and, at worst, a temporary directory that the next run deletes. Only the last
``max_to_keep`` checkpoints are kept.

Resuming is exact because every random stream of :func:`jaxreg.fit` is a function of the root key and the
epoch/step numbers (:mod:`jaxreg.train`, :mod:`jaxreg.epoch`): restoring the state after epoch ``e`` and calling ``fit``
with ``initial_epoch=e + 1`` replays exactly the shuffles, dropout masks and updates the uninterrupted run
would have done, and the reduce-on-plateau value is the restored model's validation loss, which is the value
that run carried over. So a run killed and started again with the same arguments ends with bitwise identical
parameters and the same history::

    state, history = jr.checkpoint.resumable_fit(state, train_step, (x, y), directory="runs/ckpt",
                                                 epochs=50, batch_size=64, val_data=(xv, yv),
                                                 eval_step=evaluate, early_stopping=jr.EarlyStopping(5))

The pieces, for other loops (e.g. :func:`jaxreg.fit_members`, whose stacked state and list of histories
save the same way)::

    ckpt = jr.checkpoint.CheckpointHook("runs/ckpt", max_to_keep=3, every=1)
    state, history, initial_epoch = ckpt.restore_or_init(state)
    state, new_history = jr.fit(state, step, data, ..., initial_epoch=initial_epoch, on_epoch_end=ckpt)
    history = ckpt.merged(new_history)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxreg.loop import fit
from jaxreg._typing import PyTree
from jaxreg._validate import check_callable, check_positive_int

__all__ = ["CheckpointHook", "CheckpointMismatchError", "resumable_fit"]


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds a run that cannot become the one asked for (e.g. more epochs than asked).

    Example:
      >>> import jaxreg as jr
      >>> issubclass(jr.checkpoint.CheckpointMismatchError, ValueError)
      True
    """


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: PyTree) -> PyTree:
    """Typed keys -> their uint32 key data (orbax stores plain arrays only)."""
    return jax.tree.map(lambda a: jax.random.key_data(a) if _is_key(a) else a, tree)


def _from_saveable(restored: PyTree, template: PyTree) -> PyTree:
    """Re-wrap key data as typed keys wherever ``template`` holds one, with the template's implementation."""

    def back(data, like):
        if _is_key(like):
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
        return data

    return jax.tree.map(back, restored, template)


def _abstract(tree: PyTree) -> PyTree:
    """Shape/dtype/sharding of every leaf: where and how orbax should restore it."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _concat_histories(prefix: Any, new: Any) -> Any:
    """``prefix`` followed by ``new``: dicts of lists key by key, lists of such dicts member by member."""
    if prefix is None:
        return new
    if isinstance(new, dict):
        out = {name: list(values) for name, values in prefix.items()}
        for name, values in new.items():
            out.setdefault(name, []).extend(values)
        return out
    if isinstance(new, (list, tuple)) and len(new) == len(prefix):
        return [_concat_histories(p, n) for p, n in zip(prefix, new)]
    raise ValueError(
        f"cannot append a history of type {type(new).__name__} to the checkpointed one of type "
        f"{type(prefix).__name__}; resume with the same loop that wrote the checkpoint."
    )


class CheckpointHook:
    """An ``on_epoch_end`` hook for :func:`jaxreg.fit` that saves state and history with orbax, and restores them.

    Called as ``hook(epoch, state, history)`` after every epoch, it saves a checkpoint at orbax step
    ``epoch`` (the epoch just finished) when ``(epoch + 1) % every == 0``. Saving is synchronous and atomic
    (temporary directory, then rename), keeps the last ``max_to_keep`` checkpoints and removes temporary
    directories left by a killed run when the hook is created. :meth:`restore_or_init` returns the latest
    complete checkpoint, or the given fresh state when there is none. After a restore, the hook saves the
    restored history followed by the history the resumed loop passes it, so a checkpoint always holds the
    whole history from epoch 0.

    Args:
      directory: the checkpoint directory (created if missing). One directory per run.
      max_to_keep: number of most recent checkpoints to keep; an int >= 1.
      every: save after every ``every``-th epoch (epochs ``every - 1``, ``2 * every - 1``, ...); an int >= 1.

    Raises:
      ValueError, TypeError: if ``max_to_keep`` or ``every`` is not a positive int.

    Use it as a context manager (or call :meth:`close`) to release orbax's resources.

    Example:
      >>> import tempfile
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> state = jr.create_train_state({"w": jnp.ones(2)}, optax.sgd(0.1), jax.random.key(0))
      >>> with tempfile.TemporaryDirectory() as tmp, jr.checkpoint.CheckpointHook(tmp, max_to_keep=2) as hook:
      ...     for epoch in range(3):
      ...         state = state.replace(step=state.step + 1)      # stands for one epoch of training
      ...         hook(epoch, state, {"epoch": list(range(epoch + 1))})
      ...     restored, history, initial_epoch = hook.restore_or_init(state)
      ...     print(hook.all_epochs(), initial_epoch, int(restored.step), history)
      [1, 2] 3 3 {'epoch': [0, 1, 2]}
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3, every: int = 1) -> None:
        self.max_to_keep = check_positive_int("max_to_keep", max_to_keep)
        self.every = check_positive_int("every", every)
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=False,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._history_prefix: Any = None

    def __call__(self, epoch: int, state: Any, history: Any) -> None:
        """Save ``state`` and the whole history after ``epoch`` (when ``(epoch + 1) % every == 0``)."""
        if (int(epoch) + 1) % self.every:
            return
        self.save(epoch, state, self.merged(history))

    def save(self, epoch: int, state: Any, history: Any) -> None:
        """Save ``state`` (any pytree of arrays) and ``history`` (JSON-serializable) as checkpoint ``epoch`` now.

        Args:
          epoch: the epoch just finished (the orbax step number).
          state: the pytree to save, e.g. a :class:`jaxreg.TrainState`; typed keys are allowed.
          history: a JSON-serializable history (NaN and infinities allowed).
        """
        items = ocp.args.Composite(
            state=ocp.args.StandardSave(_to_saveable(state)), history=ocp.args.JsonSave(history)
        )
        self._manager.save(int(epoch), args=items, force=True)
        self._manager.wait_until_finished()

    def all_epochs(self) -> list[int]:
        """The epochs of the complete checkpoints on disk, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The epoch of the latest complete checkpoint, or None when there is none."""
        epochs = self.all_epochs()
        return epochs[-1] if epochs else None

    def restore(self, template: Any, epoch: int | None = None) -> tuple[Any, Any]:
        """Restore checkpoint ``epoch`` (default: the latest) into the structure and devices of ``template``.

        Args:
          template: a state of the saved structure, e.g. the freshly initialized one; only its structure,
            shapes, dtypes, shardings and key implementations are used.
          epoch: the checkpoint to restore; None for the latest.

        Returns:
          ``(state, history)``.

        Raises:
          FileNotFoundError: if there is no (such) checkpoint.
        """
        if epoch is None:
            epoch = self.latest_epoch()
            if epoch is None:
                raise FileNotFoundError(f"no complete checkpoint in {self.directory}.")
        saveable = _to_saveable(template)
        restored = self._manager.restore(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(saveable)), history=ocp.args.JsonRestore()
            ),
        )
        return _from_saveable(restored.state, template), restored.history

    def restore_or_init(self, state: Any) -> tuple[Any, Any, int]:
        """Resume from the latest complete checkpoint, or start from ``state`` when there is none.

        A checkpoint that cannot be read (a run killed while deleting an old one) is skipped for the one
        before it, and deleted when an older one is restored (the resumed run writes it again); if none can
        be read, the first error is raised (a wrong template, e.g. a state without the early-stopping state
        the run saved, must not silently restart training). The restored history
        becomes the prefix that later saves (and :meth:`merged`) put in front of the resumed loop's history.

        Args:
          state: the freshly initialized state (also the template for restoring).

        Returns:
          ``(state, history, initial_epoch)``: the restored state, its history (None when starting fresh) and
          the first epoch still to train (``0`` when starting fresh), to pass as ``fit(...,
          initial_epoch=initial_epoch)``.

        Raises:
          Exception: orbax's error when checkpoints exist but none can be restored into ``state``.
        """
        first_error: Exception | None = None
        unreadable: list[int] = []
        for epoch in reversed(self.all_epochs()):
            try:
                restored, history = self.restore(state, epoch)
            except Exception as err:  # noqa: BLE001 - a half-deleted checkpoint: try the one before
                first_error = first_error or err
                unreadable.append(epoch)
                continue
            for broken in unreadable:  # the resumed run will save these epochs again
                self._manager.delete(broken)
            self._history_prefix = history
            return restored, history, epoch + 1
        if first_error is not None:
            raise first_error
        self._history_prefix = None
        return state, None, 0

    def merged(self, history: Any) -> Any:
        """The restored history (if any) followed by ``history``, the resumed loop's own record."""
        return _concat_histories(self._history_prefix, history)

    def close(self) -> None:
        """Release orbax's resources (threads, handles); the checkpoints stay on disk."""
        self._manager.close()

    def __enter__(self) -> CheckpointHook:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def resumable_fit(
    state: Any,
    train_step: Callable[..., Any],
    train_data: tuple,
    *,
    directory: str | os.PathLike,
    epochs: int,
    max_to_keep: int = 3,
    every: int = 1,
    on_epoch_end: Callable[[int, Any, dict[str, list]], Any] | None = None,
    **fit_kwargs: Any,
) -> tuple[Any, dict[str, list]]:
    """:func:`jaxreg.fit` that checkpoints every ``every`` epochs and, started again, resumes where it stopped.

    If ``directory`` holds a checkpoint, the latest complete one is restored into ``state``'s structure and
    training continues with the next epoch; otherwise it starts from ``state``. Either way the result (final
    params, model state, history) is bitwise identical to one uninterrupted ``jr.fit(state, train_step,
    train_data, epochs=epochs, **fit_kwargs)`` call, even when an earlier run was killed (SIGKILL, power loss)
    in the middle of an epoch or of a save. A run whose checkpoint says it is finished (last epoch reached,
    or early stopping triggered) returns at once, with early stopping's best params restored as ``fit``
    would.

    Call it with the same arguments each time: the checkpoint holds the training state, not the data, the
    model or the hyperparameters.

    Args:
      state: the freshly initialized :class:`jaxreg.TrainState` (template for restoring; donated to ``fit``).
      train_step: from :func:`jaxreg.make_train_step`.
      train_data: ``(x, y)`` or ``(x, y, weights)``, as :func:`jaxreg.fit`.
      directory: the run's checkpoint directory.
      epochs: the epoch number to stop before, as :func:`jaxreg.fit`.
      max_to_keep: number of most recent checkpoints to keep.
      every: checkpoint after every ``every``-th epoch.
      on_epoch_end: an optional extra ``callback(epoch, state, history)``, called after the checkpoint is
        saved; it sees the whole history since epoch 0.
      **fit_kwargs: the other keyword arguments of :func:`jaxreg.fit` (``batch_size``, ``val_data``,
        ``eval_step``, ``early_stopping``, ``monitor``, ``progress``...), except ``initial_epoch``.

    Returns:
      ``(state, history)`` with the history of every epoch since epoch 0.

    A directory that holds a longer run (more epochs than ``epochs``) gives that run's state after epoch
    ``epochs - 1``, which is the asked-for run, when that checkpoint is still kept (``max_to_keep``); else a
    :class:`CheckpointMismatchError`. A result is never labelled with other epochs than it was trained for.

    Raises:
      ValueError: if ``fit_kwargs`` holds ``initial_epoch``, or as :func:`jaxreg.fit`.
      CheckpointMismatchError: if ``directory`` holds more epochs than ``epochs`` and no longer keeps the
        checkpoint after epoch ``epochs - 1``.

    Example:
      >>> import tempfile
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> tx = optax.sgd(0.1)
      >>> step = jr.make_train_step(apply_fn, lambda p, y: (p - y) ** 2, tx)
      >>> x = jax.random.normal(jax.random.key(1), (32, 3))
      >>> data = (x, x @ jnp.array([1.0, -1.0, 0.5]))
      >>> def run(directory, epochs):
      ...     state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      ...     return jr.checkpoint.resumable_fit(state, step, data, directory=directory, epochs=epochs,
      ...                                        batch_size=8, progress=False)
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     _ = run(tmp, 2)                  # "interrupted" after 2 epochs
      ...     state, history = run(tmp, 4)     # resumes at epoch 2
      >>> ref_state, _ = jr.fit(jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0)), step, data,
      ...                       epochs=4, batch_size=8, progress=False)   # never interrupted
      >>> history["epoch"], bool((state.params["w"] == ref_state.params["w"]).all())
      ([0, 1, 2, 3], True)
    """
    epochs = check_positive_int("epochs", epochs)
    if "initial_epoch" in fit_kwargs:
        raise ValueError("resumable_fit chooses initial_epoch from the checkpoint; do not pass initial_epoch.")
    if on_epoch_end is not None:
        check_callable("on_epoch_end", on_epoch_end)
    early_stopping = fit_kwargs.get("early_stopping")
    if early_stopping is not None and state.stopper is None:
        # As fit would, but before restoring: the template must have the stopper that the checkpoints hold.
        state = state.replace(stopper=early_stopping.init({"params": state.params, "model_state": state.model_state}))
    with CheckpointHook(directory, max_to_keep=max_to_keep, every=every) as hook:
        template = state
        state, history, initial_epoch = hook.restore_or_init(state)
        if initial_epoch > epochs:
            # The directory holds a longer run: its state after epoch `epochs - 1` IS the asked-for run, if kept.
            if epochs - 1 not in hook.all_epochs():
                raise CheckpointMismatchError(
                    f"{hook.directory} holds a run trained for {initial_epoch} epochs, more than epochs = {epochs}, "
                    f"and its checkpoint after epoch {epochs - 1} is no longer kept (kept: {hook.all_epochs()}); "
                    f"ask for epochs >= {initial_epoch} or use another directory."
                )
            state, history = hook.restore(template, epochs - 1)
            initial_epoch = epochs
        stopped = early_stopping is not None and state.stopper is not None and bool(state.stopper.should_stop)
        if initial_epoch >= epochs or stopped:
            if early_stopping is not None and early_stopping.restore_best and state.stopper is not None:
                tracked = {"params": state.params, "model_state": state.model_state}
                best = early_stopping.final_params(state.stopper, tracked)
                state = state.replace(params=best["params"], model_state=best["model_state"])
            return state, history

        def on_epoch(epoch: int, state: Any, new_history: dict[str, list]) -> None:
            hook(epoch, state, new_history)
            if on_epoch_end is not None:
                on_epoch_end(epoch, state, hook.merged(new_history))

        state, new_history = fit(
            state, train_step, train_data, epochs=epochs, initial_epoch=initial_epoch, on_epoch_end=on_epoch,
            **fit_kwargs,
        )
        return state, hook.merged(new_history)

