"""Orbax checkpoints of a training run, and resuming it bit for bit (floor 6; ``jr.checkpoint``, lazily loaded).

A checkpoint is the whole :class:`jaxreg.TrainState` (params, model state, optimizer state, root key, step
counters, early-stopping state) plus the history so far, written by ``orbax.checkpoint`` as one composite
step: the arrays with ``StandardSave`` (OCDBT/tensorstore), the history with ``JsonSave``. Nothing is
pickled. Typed ``jax.random`` keys are stored as their ``jax.random.key_data`` and re-wrapped with the
template's key implementation on restore.

Writing is atomic and, by default, asynchronous: the state is copied on its devices (so the next epoch may
donate it), orbax writes the copy in the background into a temporary directory and renames it into place
when complete, while training goes on. At most one save is in flight: the next save (or :meth:`close`) waits
for it, then seals it with a list of its files, their sizes and CRC32 checksums (``jaxreg_files.json``), so
that a truncated or corrupted checkpoint is recognized before orbax reads it. A process killed at any moment
(SIGKILL included, even in the middle of a save) leaves the last complete checkpoints intact and, at worst,
a temporary directory that the next run deletes. Only the last ``max_to_keep`` checkpoints are kept.

Restoring takes the latest checkpoint that reads back intact. One that does not (truncated files, a disk
that filled up) is skipped for the one before it with one :class:`CheckpointWarning` line naming both; if
none is readable, :class:`CheckpointUnreadableError` names the directory, each checkpoint's fault and what to
do. A sealed checkpoint whose files are intact but that does not fit the given state (another model or
optimizer) is a :class:`CheckpointMismatchError`, never a silent fresh start.

Resuming is exact because every random stream of :func:`jaxreg.fit` is a function of the root key and the
epoch/step numbers (:mod:`jaxreg.train`, :mod:`jaxreg.epoch`): restoring the state after epoch ``e`` and calling ``fit``
with ``initial_epoch=e + 1`` replays exactly the shuffles, dropout masks and updates the uninterrupted run
would have done, and the reduce-on-plateau value is the restored model's validation loss, which is the value
that run carried over. So a run killed and started again with the same arguments ends with bitwise identical
parameters and the same history::

    state, history = jr.checkpoint.resumable_fit(state, train_step, (x, y), directory="runs/ckpt",
                                                 epochs=50, batch_size=64, val_data=(xv, yv),
                                                 eval_step=evaluate, early_stopping=jr.EarlyStopping(5))

**Several processes** (:mod:`jaxreg.parallel`, ``docs/multihost.md``): every process runs the same
``resumable_fit`` (or creates the hook) with the same directory, on a filesystem that all of them share, and
state and data placed with ``jr.parallel.replicate`` / ``shard_dataset``. Orbax writes and restores
together: each process writes its devices' shards, the decision to save an epoch is taken on process 0 and
shared, and process 0 renames the finished checkpoint into place once every process has written its part;
process 0 alone then seals it, and every process checks the seal before restoring, so all of them resume
from the same epoch. A killed multi-process run, started again, resumes to the result of the uninterrupted
one (``tests/test_multiprocess.py``).

The pieces, for other loops (e.g. :func:`jaxreg.fit_members`, whose stacked state and list of histories
save the same way)::

    ckpt = jr.checkpoint.CheckpointHook("runs/ckpt", max_to_keep=3, every=1)
    state, history, initial_epoch = ckpt.restore_or_init(state)
    state, new_history = jr.fit(state, step, data, ..., initial_epoch=initial_epoch, on_epoch_end=ckpt)
    history = ckpt.merged(new_history)
"""

from __future__ import annotations

import json
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from jaxreg.loop import fit
from jaxreg._typing import PyTree
from jaxreg._validate import check_callable, check_positive_int

__all__ = [
    "CheckpointError",
    "CheckpointHook",
    "CheckpointMismatchError",
    "CheckpointUnreadableError",
    "CheckpointWarning",
    "resumable_fit",
]

# The seal of a complete checkpoint: every file of its step directory with its size and CRC32.
SEAL_NAME = "jaxreg_files.json"
_SEAL_FORMAT = 1


class CheckpointError(Exception):
    """Base class of the errors of :mod:`jaxreg.checkpoint`."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A checkpoint directory holds a run that cannot become the one asked for.

    More epochs than asked and the asked-for one no longer kept, or intact checkpoints of another structure
    (another model, optimizer or early-stopping setting) than the state given.

    Example:
      >>> import jaxreg as jr
      >>> issubclass(jr.checkpoint.CheckpointMismatchError, ValueError)
      True
    """


class CheckpointUnreadableError(CheckpointError, OSError):
    """Checkpoints exist but none can be read back (truncated or corrupted files); the message says what to do.

    Example:
      >>> import jaxreg as jr
      >>> issubclass(jr.checkpoint.CheckpointUnreadableError, OSError)
      True
    """


class CheckpointWarning(UserWarning):
    """An unreadable checkpoint was skipped for an earlier one (one line: which, and where training resumes)."""


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


def _stops(state: Any) -> bool:
    """Whether ``state``'s early-stopping state (if any) says training stops after this epoch."""
    stopper = getattr(state, "stopper", None)
    return stopper is not None and bool(jax.device_get(stopper.should_stop))


def _file_crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def _step_files(step_dir: Path) -> dict[str, list[int]]:
    """``{relative path: [size, crc32]}`` of every file under ``step_dir`` except the seal."""
    files = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = Path(root, name)
            rel = path.relative_to(step_dir).as_posix()
            if rel != SEAL_NAME:
                files[rel] = [path.stat().st_size, _file_crc(path)]
    return dict(sorted(files.items()))


def _seal(step_dir: Path) -> None:
    """Write the seal of a complete step directory atomically (temporary file, then rename)."""
    if not step_dir.is_dir():  # already deleted (max_to_keep)
        return
    tmp = step_dir / (SEAL_NAME + ".tmp")
    tmp.write_text(json.dumps({"format": _SEAL_FORMAT, "files": _step_files(step_dir)}), encoding="utf-8")
    os.replace(tmp, step_dir / SEAL_NAME)


def _seal_fault(step_dir: Path) -> str | None:
    """Why ``step_dir`` does not match its seal (None if it does, or if it has no seal: nothing to check)."""
    seal = step_dir / SEAL_NAME
    if not seal.exists():
        return None
    try:
        expected = json.loads(seal.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError, OSError):
        return f"its file list {SEAL_NAME} is corrupt"
    for rel, (size, crc) in expected.items():
        path = step_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{rel} has {actual} bytes, {size} expected (truncated?)"
        if _file_crc(path) != crc:
            return f"{rel} is corrupted (CRC32 mismatch)"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


class CheckpointHook:
    """An ``on_epoch_end`` hook for :func:`jaxreg.fit` that saves state and history with orbax, and restores them.

    Called as ``hook(epoch, state, history)`` after every epoch, it saves a checkpoint at orbax step
    ``epoch`` (the epoch just finished) when ``(epoch + 1) % every == 0``, and always after the last epoch
    (``epochs - 1``, when ``epochs`` is given) and after the epoch where early stopping triggers. Saving is
    atomic (temporary directory, then rename) and by default asynchronous: a copy of the state is written in
    the background while training goes on, and a due epoch that finds the previous save still in flight is
    not saved (the next due one is: orbax's ``ContinuousCheckpointingPolicy``), so training never waits for
    the disk and at most the epochs since the last finished save are lost to a crash. It keeps the last ``max_to_keep``
    checkpoints and removes temporary directories left by a killed run when the hook is created. Each
    complete checkpoint is sealed with its files' sizes and checksums. :meth:`restore_or_init` returns the
    latest checkpoint that reads back intact, or the given fresh state when there is none. After a restore,
    the hook saves the restored history followed by the history the resumed loop passes it, so a checkpoint
    always holds the whole history from epoch 0.

    Args:
      directory: the checkpoint directory (created if missing). One directory per run.
      max_to_keep: number of most recent checkpoints to keep; an int >= 1.
      every: save after every ``every``-th epoch (epochs ``every - 1``, ``2 * every - 1``, ...); an int >= 1.
      asynchronous: write in the background (default); False saves every due epoch and waits for each save
        to be on disk.
      epochs: the run's number of epochs, if known: the last epoch is then always saved, so that a finished
        run is found finished.

    Raises:
      ValueError, TypeError: if ``max_to_keep`` or ``every`` is not a positive int, or ``asynchronous`` not a
        bool.

    Use it as a context manager (or call :meth:`close`) to finish the last save and release orbax's resources.

    Example:
      >>> import tempfile
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> state = jr.create_train_state({"w": jnp.ones(2)}, optax.sgd(0.1), jax.random.key(0))
      >>> with tempfile.TemporaryDirectory() as tmp, \\
      ...         jr.checkpoint.CheckpointHook(tmp, max_to_keep=2, asynchronous=False) as hook:
      ...     for epoch in range(3):
      ...         state = state.replace(step=state.step + 1)      # stands for one epoch of training
      ...         hook(epoch, state, {"epoch": list(range(epoch + 1))})
      ...     restored, history, initial_epoch = hook.restore_or_init(state)
      ...     print(hook.all_epochs(), initial_epoch, int(restored.step), history)
      [1, 2] 3 3 {'epoch': [0, 1, 2]}
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        every: int = 1,
        asynchronous: bool = True,
        epochs: int | None = None,
    ) -> None:
        self.max_to_keep = check_positive_int("max_to_keep", max_to_keep)
        self.every = check_positive_int("every", every)
        if not isinstance(asynchronous, bool):
            raise TypeError(f"asynchronous must be a bool, got {type(asynchronous).__name__}.")
        self.asynchronous = asynchronous
        self.epochs = None if epochs is None else check_positive_int("epochs", epochs)
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self.max_to_keep,
            create=True,
            cleanup_tmp_directories=True,
            enable_async_checkpointing=asynchronous,
            # Never wait for a save in flight: that epoch is skipped (decided on process 0 for all processes).
            save_decision_policy=ocp.checkpoint_managers.ContinuousCheckpointingPolicy(),
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._history_prefix: Any = None
        self._pending: int | None = None  # the epoch of the save in flight, sealed once it is finished

    def __call__(self, epoch: int, state: Any, history: Any) -> None:
        """Save ``state`` and the whole history after ``epoch``, if due (see the class docstring)."""
        epoch = int(epoch)
        self._seal_if_finished()
        last = (self.epochs is not None and epoch == self.epochs - 1) or _stops(state)
        if not last:
            if (epoch + 1) % self.every:
                return
            if self.asynchronous and not self._manager.should_save(epoch):
                return  # a save is still in flight: training does not wait for it
        self.save(epoch, state, self.merged(history))

    def _seal_if_finished(self) -> None:
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self.wait_until_finished()

    def _step_dir(self, epoch: int) -> Path:
        return Path(self.directory, str(int(epoch)))

    def wait_until_finished(self) -> None:
        """Wait for the save in flight (if any) to be on disk, and seal it."""
        self._manager.wait_until_finished()
        if self._pending is not None:
            if jax.process_index() == 0:
                _seal(self._step_dir(self._pending))
            self._pending = None

    def save(self, epoch: int, state: Any, history: Any) -> None:
        """Save ``state`` (any pytree of arrays) and ``history`` (JSON-serializable) as checkpoint ``epoch``.

        With ``asynchronous=True`` this returns once the state is copied (on its devices), so the caller may
        donate or change ``state`` at once; the files are written in the background.

        Args:
          epoch: the epoch just finished (the orbax step number).
          state: the pytree to save, e.g. a :class:`jaxreg.TrainState`; typed keys are allowed.
          history: a JSON-serializable history (NaN and infinities allowed).
        """
        self.wait_until_finished()
        tree = _to_saveable(state)
        if self.asynchronous:  # the loop donates the state to its next epoch: write a copy that nobody donates
            tree = jax.tree.map(lambda a: a.copy() if isinstance(a, jax.Array) else a, tree)
        items = ocp.args.Composite(state=ocp.args.StandardSave(tree), history=ocp.args.JsonSave(history))
        self._manager.save(int(epoch), args=items, force=True)
        self._pending = int(epoch)
        if not self.asynchronous:
            self.wait_until_finished()

    def all_epochs(self) -> list[int]:
        """The epochs of the complete checkpoints on disk, oldest first (after the save in flight finishes)."""
        self.wait_until_finished()
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The epoch of the latest complete checkpoint, or None when there is none."""
        epochs = self.all_epochs()
        return epochs[-1] if epochs else None

    def fault(self, epoch: int) -> str | None:
        """Why checkpoint ``epoch`` cannot be read back (a missing, truncated or corrupted file), or None.

        Only sealed checkpoints can be checked; an unsealed one (the process was killed between finishing a
        save and sealing it) gives None and is tried as it is.
        """
        return _seal_fault(self._step_dir(epoch))

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
          CheckpointUnreadableError: if its files do not match its seal (truncated or corrupted).
        """
        if epoch is None:
            epoch = self.latest_epoch()
            if epoch is None:
                raise FileNotFoundError(f"no complete checkpoint in {self.directory}.")
        else:
            self.wait_until_finished()
        fault = self.fault(epoch)
        if fault is not None:
            raise CheckpointUnreadableError(f"checkpoint {self._step_dir(epoch)} is unreadable: {fault}.")
        return self._restore(template, epoch)

    def _restore(self, template: Any, epoch: int) -> tuple[Any, Any]:
        saveable = _to_saveable(template)
        restored = self._manager.restore(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(saveable)), history=ocp.args.JsonRestore()
            ),
        )
        return _from_saveable(restored.state, template), restored.history

    def restore_or_init(self, state: Any) -> tuple[Any, Any, int]:
        """Resume from the latest checkpoint that reads back intact, or start from ``state`` when there is none.

        A checkpoint whose files are missing, truncated or corrupted (checked against its seal before orbax
        reads it) or that orbax cannot read is skipped for the one before it, with one
        :class:`CheckpointWarning` line naming it and the epoch training resumes after; the skipped ones are
        deleted (the resumed run writes them again). The restored history becomes the prefix that later
        saves (and :meth:`merged`) put in front of the resumed loop's history.

        Args:
          state: the freshly initialized state (also the template for restoring).

        Returns:
          ``(state, history, initial_epoch)``: the restored state, its history (None when starting fresh) and
          the first epoch still to train (``0`` when starting fresh), to pass as ``fit(...,
          initial_epoch=initial_epoch)``.

        Raises:
          CheckpointMismatchError: a checkpoint whose files are intact does not fit ``state`` (another model,
            optimizer or early-stopping setting): training must not silently start again.
          CheckpointUnreadableError: checkpoints exist and none can be read.
        """
        faults: list[tuple[int, str]] = []
        for epoch in reversed(self.all_epochs()):
            fault = self.fault(epoch)
            if fault is None:
                try:
                    restored, history = self._restore(state, epoch)
                except Exception as err:  # noqa: BLE001 - orbax/tensorstore raise many types
                    if (self._step_dir(epoch) / SEAL_NAME).exists():  # intact files: the template is wrong
                        raise CheckpointMismatchError(
                            f"the checkpoint after epoch {epoch} in {self.directory} is intact but does not fit "
                            f"the state given (another model, optimizer or early-stopping setting?): "
                            f"{_first_line(err)}. Resume with the arguments that wrote it, or use another "
                            "directory."
                        ) from err
                    fault = _first_line(err)
            if fault is not None:
                faults.append((epoch, fault))
                continue
            for broken, _ in faults:  # the resumed run will save these epochs again
                self._manager.delete(broken)
            if faults:
                skipped = "; ".join(f"epoch {e}: {why}" for e, why in faults)
                warnings.warn(
                    f"skipped unreadable checkpoint(s) in {self.directory} ({skipped}); resuming after epoch "
                    f"{epoch}.",
                    CheckpointWarning,
                    stacklevel=2,
                )
            self._history_prefix = history
            return restored, history, epoch + 1
        if faults:
            listed = "; ".join(f"epoch {e}: {why}" for e, why in faults)
            raise CheckpointUnreadableError(
                f"no checkpoint in {self.directory} can be read ({listed}). The files were truncated or "
                "corrupted (a full disk, an interrupted copy?) or written by another model. To train this run "
                f"from the start, delete {self.directory} or choose another directory; to keep them, move "
                "them away first."
            )
        self._history_prefix = None
        return state, None, 0

    def merged(self, history: Any) -> Any:
        """The restored history (if any) followed by ``history``, the resumed loop's own record."""
        return _concat_histories(self._history_prefix, history)

    def close(self) -> None:
        """Finish the save in flight, then release orbax's resources (threads, handles)."""
        try:
            self.wait_until_finished()
        finally:
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
    asynchronous: bool = True,
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
      asynchronous: write checkpoints in the background while training goes on (:class:`CheckpointHook`).
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
        checkpoint after epoch ``epochs - 1``, or intact checkpoints that do not fit ``state``.
      CheckpointUnreadableError: if ``directory`` holds checkpoints and none can be read back.

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
    with CheckpointHook(
        directory, max_to_keep=max_to_keep, every=every, asynchronous=asynchronous, epochs=epochs
    ) as hook:
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

