"""Running experiments: the data splits on the device, one run (:func:`train_run`), many runs as one program.

Every story trains in one of two ways:

* one run per variant: a :class:`jaxreg.experiments.programs.Program` trained by :func:`train_run`, a
  :func:`jaxreg.fit` with the training set evaluated in evaluation mode after every epoch, optionally on a
  device mesh and with orbax checkpoints (``compare``, ``cnn``, ``transformer``, ``early_stopping``);
* all variants as the members of ONE ``jax.vmap``-ped program: a
  :class:`jaxreg.experiments.programs.SweepProgram` trained by :func:`train_members`
  (:func:`jaxreg.fit_members`) or by :func:`jaxreg.sweep_fit` / :func:`jaxreg.kfold_fit` (``dropout_mlp``,
  ``penalties``, ``regression``, ``kfold``, ``bias_variance``).

Either way the result is a :func:`jaxreg.experiments.records.run_record` per variant. The keys of every
random stream come from :mod:`jaxreg.experiments.keys`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxreg.experiments import data as _data
from jaxreg.experiments.arguments import UsageError
from jaxreg.experiments.keys import init_key, label_noise_rng, subset_rng, train_key
from jaxreg.experiments.programs import Program, SweepProgram, sweep_hparams
from jaxreg.experiments.records import RunError, run_record
from jaxreg.loop import fit, fit_members
from jaxreg.members import stack_members
from jaxreg.averaging import update_bn
from jaxreg.train import create_train_state

__all__ = [
    "EVAL_TRAIN_LIMIT",
    "Splits",
    "noisy_labels",
    "load_splits",
    "evaluate",
    "final_metrics",
    "train_run",
    "member_states",
    "train_members",
    "member_records",
]


# The training set is re-evaluated (in evaluation mode, one batch) after every epoch when it is at most this
# large; beyond it the history's train curve is the running training-mode mean instead.
EVAL_TRAIN_LIMIT = 10_000


# Final metrics are computed in chunks of this many examples (one compilation: the last chunk is padded
# and weighted out).
_EVAL_CHUNK = 2_048


class Splits(NamedTuple):
    """The three splits of a dataset as device arrays, its metadata, and the clean train labels under label noise."""

    info: _data.DatasetInfo
    train: tuple[jax.Array, jax.Array]
    validation: tuple[jax.Array, jax.Array]
    test: tuple[jax.Array, jax.Array]
    train_clean: tuple[jax.Array, jax.Array] | None = None  # the training set with its original labels


def noisy_labels(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
    """Replace exactly ``round(fraction * n)`` labels, chosen at random, by a uniformly drawn other class.

    Example:
      >>> import numpy as np
      >>> from jaxreg.experiments.runner import noisy_labels
      >>> labels = np.arange(10) % 3
      >>> int(np.sum(noisy_labels(labels, 0.3, 3, seed=0) != labels))
      3
    """
    count = int(round(fraction * labels.shape[0]))
    if count == 0:
        return labels
    rng = label_noise_rng(seed)
    idx = rng.choice(labels.shape[0], size=count, replace=False)
    noisy = np.array(labels, copy=True)
    noisy[idx] = (labels[idx] + rng.integers(1, num_classes, size=count)) % num_classes
    return noisy.astype(labels.dtype)


def _subset(x: np.ndarray, y: np.ndarray, size: int | None, seed: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
    if size is None or size >= len(y):
        return x, y
    keep = np.sort(subset_rng(seed, stream).permutation(len(y))[:size])
    return x[keep], y[keep]


def _place(mesh: Any, arrays: tuple) -> tuple:
    # Split the examples over the devices when they divide the split size; else replicate (still correct).
    from jaxreg import parallel

    if mesh is None:
        return tuple(jnp.asarray(a) for a in arrays)
    if all(a.shape[0] % mesh.size == 0 for a in arrays):
        return tuple(parallel.shard_dataset(mesh, arrays))  # every process holds the full arrays
    return tuple(parallel.replicate(mesh, arrays))


def load_splits(dataset: str, *, seed: int, data_dir: str | None = None, train_size: int | None = None,
                eval_size: int | None = None, batch_size: int | None = None, label_noise: float = 0.0,
                mesh: Any = None, **options: Any) -> Splits:
    """Load ``train``/``validation``/``test`` of a dataset (:func:`jaxreg.experiments.data.load`) onto the device.

    Args:
      dataset: a dataset name of :mod:`jaxreg.experiments.data`.
      seed: the split seed.
      data_dir: TFDS data directory.
      train_size: keep a seeded random subset of this many training examples (None: all).
      eval_size: keep at most this many validation and test examples (seeded subsets; None: all).
      batch_size: if given, check that the training set holds at least one batch.
      label_noise: replace this fraction of the training labels by a random other class
        (:func:`noisy_labels`; classification only); ``Splits.train_clean`` then keeps the original labels.
      mesh: a ``jax.sharding.Mesh`` (:func:`jaxreg.parallel.data_mesh`): split the examples over its devices
        when they divide each split's size, else replicate them; None: the default device.
      **options: dataset options of :func:`jaxreg.experiments.data.load` (e.g. ``n_train`` of the synthetic sets).

    Returns:
      :class:`Splits`.

    Raises:
      UsageError: a batch size larger than the training set, or ``label_noise`` outside ``[0, 1)`` or on a
        regression dataset.
      jaxreg.experiments.data.DatasetUnavailableError: a TFDS set that is not prepared offline.
    """
    info = _data.info(dataset, data_dir=data_dir)
    if not 0.0 <= label_noise < 1.0:
        raise UsageError(f"--label-noise must be in [0, 1), got {label_noise:g}")
    if label_noise and info.task != "classification":
        raise UsageError(f"--label-noise needs a classification dataset, {dataset!r} is {info.task}")
    arrays = {}
    for stream, split in enumerate(_data.SPLITS):
        x, y = _data.load(dataset, split=split, seed=seed, data_dir=data_dir, **options)
        x, y = _subset(x, y, train_size if split == "train" else eval_size, seed, stream)
        arrays[split] = (x, y)
    num_train = int(arrays["train"][1].shape[0])
    if batch_size is not None and batch_size > num_train:
        raise UsageError(f"--batch-size must be <= the {num_train} training examples, got {batch_size}")
    x, clean_labels = arrays["train"]
    if label_noise:
        arrays["train"] = (x, noisy_labels(clean_labels, label_noise, info.num_classes, seed))
    placed = {split: _place(mesh, arrays[split]) for split in _data.SPLITS}
    train_clean = None
    if label_noise:  # the same device inputs, with the original labels
        train_clean = (placed["train"][0], *_place(mesh, (clean_labels,)))
    return Splits(info, *(placed[split] for split in _data.SPLITS), train_clean=train_clean)


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


def final_metrics(eval_fn: Callable, state: Any, splits: Splits) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` on the splits: ``{"train": ..., "validation": ..., "test": ...}`` (and ``"train_clean"``)."""
    names = ("train", "validation", "test") + (("train_clean",) if splits.train_clean is not None else ())
    return {name: evaluate(eval_fn, state, *getattr(splits, name)) for name in names}


def train_run(label: str, program: Program, splits: Splits, *, seed: int, epochs: int, batch_size: int,
              early_stopping: Any = None, monitor: str = "val_loss", progress: bool = False,
              settings: Mapping[str, Any] | None = None, on_epoch_end: Callable | None = None,
              mesh: Any = None, checkpoint_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Initialize, :func:`jaxreg.fit` and summarize one run; returns its :func:`run_record`.

    Args:
      label: the run's name in tables and figures.
      program: its :class:`Program`.
      splits: the data.
      seed: :func:`init_key` (seed) initializes, :func:`train_key` (seed) is the state's key.
      epochs, batch_size, early_stopping, monitor, on_epoch_end: as :func:`jaxreg.fit`.
      progress: report every epoch: fit's bar on a terminal, else one log line per epoch (:mod:`jaxreg.progress`).
      settings: JSON-ready description of the run's regularizers.
      mesh: replicate the state over this ``jax.sharding.Mesh`` (the data were placed by :func:`load_splits`).
      checkpoint_dir: checkpoint every epoch there and resume from what it holds
        (:func:`jaxreg.checkpoint.resumable_fit`).

    Returns:
      The run record (the training set is evaluated in evaluation mode after every epoch when it has at most
      10000 examples).
    """
    variables = program.init(init_key(seed), splits.train[0][:1])
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    swa_start = None
    if program.swa_fraction is not None:  # SWA averages the params of the last epochs
        swa_start = int(program.swa_fraction * epochs) * (int(splits.train[1].shape[0]) // batch_size)
    state = create_train_state(params, program.optimizer, train_key(seed), model_state=model_state,
                               ema_decay=program.ema_decay, swa_start=swa_start)
    if mesh is not None:
        from jaxreg import parallel

        state = parallel.replicate(mesh, state)
    eval_train = int(splits.train[1].shape[0]) <= EVAL_TRAIN_LIMIT
    fit_kwargs = dict(epochs=epochs, batch_size=batch_size, val_data=splits.validation, eval_step=program.eval_step,
                      early_stopping=early_stopping, monitor=monitor, eval_train=eval_train, progress=progress,
                      on_epoch_end=on_epoch_end, hparams=program.hparams)
    if checkpoint_dir is None:
        state, history = fit(state, program.train_step, splits.train, **fit_kwargs)
    else:
        from jaxreg import checkpoint

        try:
            state, history = checkpoint.resumable_fit(state, program.train_step, splits.train,
                                                      directory=checkpoint_dir, **fit_kwargs)
        except checkpoint.CheckpointMismatchError as err:
            raise UsageError(f"--checkpoint-dir: {err}") from None
        except checkpoint.CheckpointUnreadableError as err:
            raise RunError(f"--checkpoint-dir: {err}") from None
    if program.average is not None and jax.tree.leaves(state.model_state):
        # Averaged weights need their own batch-norm statistics (PyTorch's swa_utils.update_bn).
        state = update_bn(program.apply_fn, state, splits.train[0], batch_size=batch_size, average=program.average)
    best_epoch = None if early_stopping is None else int(state.stopper.best_step)
    params = state.params if program.params_view is None else program.params_view(state.params)
    return run_record(label, program.task, final_metrics(program.eval_step, state, splits), params, history,
                      settings=settings, skipped=int(state.skipped), best_epoch=best_epoch)


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
                  progress: bool = False) -> tuple[Any, list[dict[str, list]]]:
    """Train every member (hyperparameters ``members[i]``, seed ``seeds[i]``) as one vmapped program.

    A thin layer over :func:`jaxreg.fit_members`: validation after every epoch, the training set evaluated
    in evaluation mode when it has at most 10000 examples; ``progress`` as :func:`jaxreg.fit_members`' (a bar
    on a terminal, else one log line per epoch with the members' mean losses).

    Returns:
      ``(states, histories)`` of :func:`jaxreg.fit_members`.
    """
    states = member_states(program, splits.train[0], seeds, batch_norm)
    eval_train = int(splits.train[1].shape[0]) <= EVAL_TRAIN_LIMIT
    return fit_members(states, program.make_step, splits.train, epochs=epochs, batch_size=batch_size,
                       hparams=sweep_hparams(members), val_data=splits.validation, eval_step=program.eval_step,
                       eval_train=eval_train, progress=progress)


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
