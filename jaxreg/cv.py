"""Cross-validation (floor 6).

Fold splits are host-side numpy: :func:`kfold_indices` gives scikit-learn's ``KFold`` folds (shuffled
reproducibly by a ``jax.random`` key when one is given), and :func:`kfold_masks` gives the same folds as a
``(k, num_examples)`` bool array, the form a ``jax.vmap`` over folds consumes: every fold sees the full,
equally shaped dataset and weights its loss by its own mask.

Many models in one program: :func:`fit_members` trains ``K`` members (stacked :class:`jaxreg.TrainState` pytrees)
as one ``jax.vmap``-ped, jit-compiled epoch per epoch, each member with its own key, per-example weights
(fold masks), traced hyperparameters (a penalty coefficient or dropout rate passed to a step built inside
the vmapped function) and early stopper (a stopped member is frozen by a ``jnp.where`` select while the
others go on). :func:`kfold_fit` (``k`` folds, optionally crossed with a sweep) and :func:`sweep_fit` (one
member per hyperparameter setting) are the two common shapes of it. Member ``i`` of a run equals
``jr.fit`` of that member alone, to float tolerance. Whether it is faster than training the members one
after the other depends on the size of the model and the device: ``benchmarks/sweep.py`` measures it.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._fit import _summary, epoch_columns, has_plateau, make_train_epoch
from jaxreg._typing import KeyArray, MaskOrFn, PyTree
from jaxreg._validate import check_callable, check_choice, check_positive_int
from jaxreg.early_stopping import EarlyStopping
from jaxreg.select import kernel_mask
from jaxreg.train import TrainState

__all__ = [
    "kfold_indices",
    "kfold_masks",
    "stack_members",
    "unstack_members",
    "fit_members",
    "sweep_fit",
    "kfold_fit",
]


# ----------------------------------------------------------------------------------------------------------
# Fold splits (host-side numpy)
# ----------------------------------------------------------------------------------------------------------


def _check_split_args(num_examples: int, k: int, key: KeyArray | None) -> tuple[int, int]:
    """Validate the split arguments; return them as Python ints."""
    num_examples = check_positive_int("num_examples", num_examples, minimum=2)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (numbers.Integral, np.integer)):
        raise TypeError(f"k must be an integer in the range [2, num_examples], got k = {k!r}.")
    k = int(k)
    if not 2 <= k <= num_examples:
        raise ValueError(f"k must be in the range [2, num_examples] = [2, {num_examples}], got k = {k}.")
    if key is not None:
        is_typed_key = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        is_raw_key = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,)
        if not (is_typed_key and key.shape == ()) and not is_raw_key:
            raise TypeError(
                "key must be a single jax.random key (jax.random.key(0) or jax.random.PRNGKey(0)) or None, "
                f"got key = {key!r}."
            )
    return num_examples, k


def _validation_folds(num_examples: int, k: int, key: KeyArray | None) -> list[np.ndarray]:
    """The k validation index sets, each sorted; sizes as scikit-learn's KFold (the first n % k get one more)."""
    order = np.arange(num_examples) if key is None else np.asarray(jax.random.permutation(key, num_examples))
    sizes = np.full(k, num_examples // k, dtype=np.int64)
    sizes[: num_examples % k] += 1
    stops = np.cumsum(sizes)
    starts = stops - sizes
    return [np.sort(order[start:stop]).astype(np.int64) for start, stop in zip(starts, stops)]


def kfold_indices(
    num_examples: int, k: int, *, key: KeyArray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``range(num_examples)`` into ``k`` folds: ``k`` pairs ``(train_idx, val_idx)``.

    Without a key the folds are scikit-learn's ``KFold(n_splits=k)`` (no shuffling): fold ``i`` validates
    on a contiguous block, the first ``num_examples % k`` blocks being one example longer. With a key the
    examples are first permuted by ``jax.random.permutation(key, num_examples)`` and the blocks are taken
    from that order: same key, same folds. Either way every example is validated in exactly one fold, and
    both index arrays of a pair are sorted (as scikit-learn returns them).

    Args:
      num_examples: number of examples, an int >= 2.
      k: number of folds, an int in ``[2, num_examples]``.
      key: optional ``jax.random`` key (typed or legacy ``uint32[2]``) to shuffle the examples first.

    Returns:
      A list of ``k`` tuples ``(train_idx, val_idx)`` of int64 numpy arrays, of lengths
      ``num_examples - m`` and ``m`` where ``m`` is the fold's validation size.

    Raises:
      TypeError: if ``num_examples`` or ``k`` is not an int, or ``key`` is not a single key.
      ValueError: if ``num_examples < 2`` or ``k`` is outside ``[2, num_examples]``.

    Example:
      >>> import jax
      >>> import jaxreg as jr
      >>> for train_idx, val_idx in jr.kfold_indices(5, 2):
      ...     print(train_idx, val_idx)
      [3 4] [0 1 2]
      [0 1 2] [3 4]
      >>> folds = jr.kfold_indices(10, 3, key=jax.random.key(0))
      >>> sorted(int(i) for _, val_idx in folds for i in val_idx) == list(range(10))
      True
    """
    num_examples, k = _check_split_args(num_examples, k, key)
    everything = np.arange(num_examples, dtype=np.int64)
    folds = []
    for val_idx in _validation_folds(num_examples, k, key):
        train_idx = np.setdiff1d(everything, val_idx, assume_unique=True)
        folds.append((train_idx, val_idx))
    return folds


def kfold_masks(num_examples: int, k: int, *, key: KeyArray | None = None) -> np.ndarray:
    """The folds of :func:`kfold_indices` as a ``(k, num_examples)`` bool array, True = TRAINING example.

    ``masks[i, j]`` is True when example ``j`` is in the training set of fold ``i``; the validation mask of
    fold ``i`` is ``~masks[i]``.
    This is the form for training all folds as one ``jax.vmap``-ped program: each fold keeps the whole
    dataset (equal shapes) and weights its per-example loss by ``masks[i]`` (and its validation metric by
    ``~masks[i]``). Same arguments, same folds as :func:`kfold_indices`.

    Args:
      num_examples: number of examples, an int >= 2.
      k: number of folds, an int in ``[2, num_examples]``.
      key: optional ``jax.random`` key to shuffle the examples first, as in :func:`kfold_indices`.

    Returns:
      A numpy bool array of shape ``(k, num_examples)``; each column has exactly one False (every example
      is validated once), and row ``i`` has ``len(val_idx_i)`` Falses.

    Raises:
      TypeError: if ``num_examples`` or ``k`` is not an int, or ``key`` is not a single key.
      ValueError: if ``num_examples < 2`` or ``k`` is outside ``[2, num_examples]``.

    Example:
      >>> import jaxreg as jr
      >>> jr.kfold_masks(5, 2).astype(int)
      array([[0, 0, 0, 1, 1],
             [1, 1, 1, 0, 0]])
    """
    num_examples, k = _check_split_args(num_examples, k, key)
    masks = np.ones((k, num_examples), dtype=bool)
    for fold, val_idx in enumerate(_validation_folds(num_examples, k, key)):
        masks[fold, val_idx] = False
    return masks


# ----------------------------------------------------------------------------------------------------------
# Many models in one program: k folds and hyperparameter sweeps as one jax.vmap
# ----------------------------------------------------------------------------------------------------------

_MONITOR_SOURCES = {
    "val_loss": ("val", "loss"),
    "val_accuracy": ("val", "accuracy"),
    "train_loss": ("train", "loss"),
    "train_accuracy": ("train", "accuracy"),
}


def stack_members(trees: Sequence[PyTree]) -> PyTree:
    """Stack equally structured pytrees (one per member) along a new leading member axis.

    Typed ``jax.random`` keys stack like any other leaf. Every leaf of the result is a fresh buffer, so the
    stacked tree can be donated (:func:`fit_members` donates its ``states``) while the inputs stay valid.

    Args:
      trees: a non-empty sequence of pytrees with identical structure, shapes and dtypes, e.g. one
        :class:`jaxreg.TrainState` per member (``[state] * k`` repeats one initial state).

    Returns:
      A pytree of the same structure whose leaves have a leading axis of length ``len(trees)``.

    Raises:
      ValueError: if ``trees`` is empty or the structures differ.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> state = jr.create_train_state({"w": jnp.zeros(2)}, optax.sgd(0.1), jax.random.key(0))
      >>> states = jr.stack_members([state] * 3)
      >>> states.params["w"].shape, states.key.shape, states.step
      ((3, 2), (3,), Array([0, 0, 0], dtype=int32))
      >>> jr.unstack_members(states)[2].params["w"]
      Array([0., 0.], dtype=float32)
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack_members needs at least one pytree, got an empty sequence.")
    try:
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
    except ValueError as err:
        raise ValueError(f"stack_members needs pytrees of identical structure: {err}") from None


def unstack_members(tree: PyTree) -> list[PyTree]:
    """Split a pytree stacked along a leading member axis into one pytree per member.

    Args:
      tree: a pytree whose leaves all have the same leading length ``K`` (e.g. the states returned by
        :func:`fit_members`).

    Returns:
      A list of ``K`` pytrees, member ``i`` holding ``leaf[i]`` of every leaf.

    Raises:
      ValueError: if the tree has no leaves or the leading lengths differ.

    Example:
      >>> import jax.numpy as jnp
      >>> import jaxreg as jr
      >>> [m["w"].tolist() for m in jr.unstack_members({"w": jnp.arange(4.0).reshape(2, 2)})]
      [[0.0, 1.0], [2.0, 3.0]]
    """
    num = _num_members("tree", tree)
    return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(num)]


def _num_members(name: str, tree: PyTree) -> int:
    """The common leading length of every leaf of ``tree``; ValueError naming ``name`` otherwise."""
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if not sizes:
        raise ValueError(f"{name} has no array leaves; expected a pytree stacked along a member axis.")
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            f"every leaf of {name} must have the same leading (member) axis, got leading lengths "
            f"{sorted(s for s in sizes if s is not None)}{' and scalars' if None in sizes else ''}."
        )
    return sizes.pop()


def _fresh(tree: PyTree) -> PyTree:
    # The epoch program donates the states: they must alias neither the caller's arrays nor each other.
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


@functools.partial(jax.jit, static_argnums=1)
def _repeat_members(tree: PyTree, num: int) -> PyTree:
    # One compiled program for the whole tree (fresh output buffers): per-leaf jnp.repeat calls would cost a
    # dispatch each, more than a small model's epoch.
    return jax.tree.map(lambda a: jnp.broadcast_to(a[None], (num, *jnp.shape(a))), tree)


def _member_weights(name: str, weights: ArrayLike | None, num_members: int, num_examples: int) -> jax.Array | None:
    if weights is None:
        return None
    w = jnp.asarray(weights)
    if w.shape != (num_members, num_examples):
        raise ValueError(
            f"{name} must have shape (num_members, num_examples) = ({num_members}, {num_examples}), "
            f"got shape {w.shape}."
        )
    return w.astype(jnp.float32) if w.dtype == jnp.bool_ else w


@dataclasses.dataclass(frozen=True)
class _MembersConfig:
    """Everything static about a members run: one compiled epoch program per distinct config."""

    train_step: Callable
    has_hparams: bool
    batch_size: int
    eval_step: Callable | None
    has_val: bool
    eval_train: bool
    early_stopping: Any
    monitor: str
    norms_mask: Any


def _member_epoch(cfg: _MembersConfig, state, hparams, train_w, val_w, value, x, y, xv, yv, epoch):
    """One epoch of one member: train, evaluate, update its stopper; a stopped member comes back unchanged."""
    step = cfg.train_step(hparams) if cfg.has_hparams else cfg.train_step
    train_epoch = make_train_epoch(step, batch_size=cfg.batch_size, jit=False)
    new_state, train_metrics = train_epoch(state, x, y, epoch, train_w, value)
    out = {"train": train_metrics, "summary": _summary(new_state.params, new_state.opt_state, cfg.norms_mask)}
    if cfg.has_val:
        out["val"] = cfg.eval_step(new_state, xv, yv, val_w)
    if cfg.eval_train:
        out["train_eval"] = cfg.eval_step(new_state, x, y, train_w)
    if cfg.early_stopping is not None:
        group, name = _MONITOR_SOURCES[cfg.monitor]
        if name not in out.get(group, {}):
            raise ValueError(f"monitor = {cfg.monitor!r} is not recorded (no {name} in the {group} metrics).")
        tracked = {"params": new_state.params, "model_state": new_state.model_state}
        stopper = cfg.early_stopping.update(new_state.stopper, out[group][name], tracked)
        new_state = new_state.replace(stopper=stopper)
        # Members whose stopper already said stop are frozen: their whole state (params, optimizer, stopper,
        # step counter) is selected back, as if their own training loop had ended.
        frozen = state.stopper.should_stop
        new_state = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state, new_state)
    return new_state, out


@functools.lru_cache(maxsize=32)
def _members_epoch_program(cfg: _MembersConfig) -> Callable:
    member = functools.partial(_member_epoch, cfg)
    # state, hparams, train_w, val_w, value per member; data and epoch number shared.
    batched = jax.vmap(member, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None))
    return jax.jit(batched, donate_argnums=(0,))


def _records(host: dict, epoch: int, active: np.ndarray, histories: list[dict[str, list]]) -> None:
    """Append member ``i``'s epoch record to ``histories[i]`` for every active member, as :func:`jaxreg.fit`."""
    columns = epoch_columns(host)
    for i in np.flatnonzero(active):
        history = histories[i]
        history.setdefault("epoch", []).append(epoch)
        for name, values in columns.items():
            history.setdefault(name, []).append(values[i].item())


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
    on_epoch_end: Callable[[int, TrainState, list[dict[str, list]]], Any] | None = None,
) -> tuple[TrainState, list[dict[str, list]]]:
    """Train ``K`` models at once, as one ``jax.vmap``-ped, jit-compiled epoch program per epoch.

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
            apply_fn = functools.partial(my_model, rate=h["dropout"])   # a model taking a traced rate
            return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, h["l2"], jr.kernel_mask)],
                                      jit=False)

    Per-member weights (``train_weights``) multiply each example's loss, so a fold's validation examples still
    sit in the shuffled batches with weight 0: a batch holds about ``batch_size * (k - 1) / k`` training
    examples of a fold, not ``batch_size``.

    Args:
      states: the members' states stacked along a leading axis of length ``K`` (:func:`stack_members`);
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
      early_stopping: an optional :class:`jaxreg.EarlyStopping` applied to every member separately.
      monitor: the history key the stoppers watch: ``"val_loss"``, ``"val_accuracy"``, ``"train_loss"``,
        ``"train_accuracy"``.
      eval_train: also evaluate each member's (weighted) training set in evaluation mode after each epoch.
      norms_mask: the leaves whose norms and sparsity are recorded, as in :func:`jaxreg.fit`.
      initial_epoch: the first epoch number (to resume a checkpointed run with the same shuffles).
      on_epoch_end: optional ``callback(epoch, states, histories)`` after each epoch; ``states`` is donated to
        the next epoch (copy or finish saving what you keep), e.g. a :mod:`jaxreg.checkpoint` hook.

    Returns:
      ``(states, histories)``: the final states, stacked (:func:`unstack_members` splits them), and a list of
      ``K`` history dicts with the keys and meaning of :func:`jaxreg.fit`'s, member ``i``'s ending with the
      epoch at which its stopper said stop.

    Raises:
      ValueError: if ``states`` is not stacked along a member axis, a per-member argument's leading length is
        not ``K``, a weight array has the wrong shape, or as :func:`jaxreg.fit` for the other arguments.
      TypeError: if ``train_data``/``val_data`` is not a 2-tuple or a callable argument is not callable.

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
    check_callable("train_step", train_step)
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    initial_epoch = check_positive_int("initial_epoch", initial_epoch, minimum=0)
    check_choice("monitor", monitor, tuple(_MONITOR_SOURCES))
    if on_epoch_end is not None:
        check_callable("on_epoch_end", on_epoch_end)
    if eval_step is not None:
        check_callable("eval_step", eval_step)
    x, y = _pair("train_data", train_data)
    xv = yv = None
    if val_data is not None:
        xv, yv = _pair("val_data", val_data)
    if (val_data is not None or eval_train) and eval_step is None:
        raise ValueError("eval_step is required with val_data or eval_train; build one with jr.make_eval_step.")
    if early_stopping is not None and monitor.startswith("val_") and val_data is None:
        raise ValueError(f"monitor = {monitor!r} needs val_data.")
    if val_weights is not None and val_data is None:
        raise ValueError("val_weights needs val_data.")

    if not hasattr(states, "step") or np.ndim(states.step) != 1:
        raise ValueError(
            "states must be TrainStates stacked along a leading member axis (jr.stack_members), got step of "
            f"shape {np.shape(getattr(states, 'step', None))}."
        )
    num = int(np.shape(states.step)[0])
    _check_leading("states", states, num)
    if hparams is not None:
        _check_leading("hparams", hparams, num)
    num_train = _num_examples_of("train_data", x, y)
    train_w = _member_weights("train_weights", train_weights, num, num_train)
    val_w = None
    if val_data is not None:
        val_w = _member_weights("val_weights", val_weights, num, _num_examples_of("val_data", xv, yv))

    if early_stopping is not None and states.stopper is None:
        tracked = {"params": states.params, "model_state": states.model_state}
        states = states.replace(stopper=_fresh(jax.vmap(early_stopping.init)(tracked)))

    cfg = _MembersConfig(
        train_step=train_step,
        has_hparams=hparams is not None,
        batch_size=batch_size,
        eval_step=eval_step,
        has_val=val_data is not None,
        eval_train=bool(eval_train),
        early_stopping=early_stopping,
        monitor=monitor,
        norms_mask=norms_mask,
    )
    try:
        program = _members_epoch_program(cfg)
    except TypeError:  # an unhashable piece (a mask pytree): compile for this call only
        program = _members_epoch_program.__wrapped__(cfg)

    value = None
    if val_data is not None and has_plateau(states.opt_state):
        # As jr.fit: every step of epoch e gets the validation loss after epoch e - 1 as the plateau value.
        value = jax.vmap(eval_step, in_axes=(0, None, None, 0 if val_w is not None else None))(
            states, xv, yv, val_w
        )["loss"]

    histories: list[dict[str, list]] = [{} for _ in range(num)]
    active = np.ones(num, dtype=bool)
    if states.stopper is not None:
        active = ~np.asarray(jax.device_get(states.stopper.should_stop))
    for epoch in range(initial_epoch, epochs):
        if not active.any():
            break
        states, out = program(states, hparams, train_w, val_w, value, x, y, xv, yv, jnp.int32(epoch))
        if value is not None:
            value = out["val"]["loss"]
        stopped = None if early_stopping is None else states.stopper.should_stop
        host, stopped = jax.device_get((out, stopped))
        _records(host, epoch, active, histories)
        if stopped is not None:
            active = ~np.asarray(stopped)
        if on_epoch_end is not None:
            on_epoch_end(epoch, states, histories)

    if early_stopping is not None and early_stopping.restore_best:
        tracked = {"params": states.params, "model_state": states.model_state}
        best = jax.vmap(early_stopping.final_params)(states.stopper, tracked)
        states = states.replace(params=best["params"], model_state=best["model_state"])
    return states, histories


def _pair(name: str, data: Any) -> tuple[Any, Any]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        got = type(data).__name__ + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        raise TypeError(
            f"{name} must be a tuple (x, y) shared by every member (per-member weights go in their own "
            f"argument), got {name} = {got}."
        )
    as_array = functools.partial(jax.tree.map, jnp.asarray)
    return as_array(data[0]), as_array(data[1])


def _num_examples_of(name: str, x: Any, y: Any) -> int:
    sizes = {np.shape(leaf)[0] for leaf in jax.tree.leaves((x, y))}
    if len(sizes) != 1:
        raise ValueError(f"x and y of {name} must share their leading (example) axis, got sizes {sorted(sizes)}.")
    return sizes.pop()


def _check_leading(name: str, tree: PyTree, num: int) -> None:
    found = _num_members(name, tree)
    if found != num:
        raise ValueError(f"every leaf of {name} must have a leading member axis of length {num}, got {found}.")


def sweep_fit(
    state: TrainState,
    make_step: Callable[[PyTree], Callable[..., Any]],
    train_data: tuple,
    *,
    hparams: PyTree,
    epochs: int,
    batch_size: int,
    **kwargs: Any,
) -> tuple[TrainState, list[dict[str, list]]]:
    """Train one model per hyperparameter setting, all from the same initial ``state``, as one vmapped program.

    ``sweep_fit(state, make_step, data, hparams=h, ...)`` is :func:`fit_members` on ``K`` copies of ``state``
    (same initial params and key, so members differ only by their hyperparameters), where ``K`` is the
    leading length of ``hparams``' leaves. For a grid over two hyperparameters, flatten it first, e.g.
    ``l2, rate = (a.ravel() for a in jnp.meshgrid(l2s, rates))``.

    Args:
      state: one :class:`jaxreg.TrainState` (not stacked); copied, so it stays valid.
      make_step: ``hparams_i -> step``, called inside the vmapped program with one member's traced
        hyperparameters (see :func:`fit_members`).
      train_data: ``(x, y)`` shared by every member.
      hparams: pytree of arrays with a leading member axis, e.g. ``{"l2": jnp.array([0.0, 1e-4, 1e-3])}``.
      epochs: the epoch number to stop before.
      batch_size: examples per step.
      **kwargs: any other keyword argument of :func:`fit_members` (``val_data``, ``eval_step``,
        ``early_stopping``, ``monitor``, ``train_weights``, ``on_epoch_end``...).

    Returns:
      ``(states, histories)`` as :func:`fit_members`: member ``i`` was trained with ``hparams[...][i]``.

    Raises:
      ValueError, TypeError: as :func:`fit_members`; also if ``hparams`` is None or has no array leaves.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> def make_step(h):
      ...     return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l1, h["l1"])], jit=False)
      >>> x = jax.random.normal(jax.random.key(1), (64, 4))
      >>> y = x @ jnp.array([1.0, -1.0, 0.0, 0.0])
      >>> state = jr.create_train_state({"w": jnp.zeros(4)}, tx, jax.random.key(0))
      >>> states, histories = jr.sweep_fit(state, make_step, (x, y), hparams={"l1": jnp.array([0.0, 0.5])},
      ...                                  epochs=3, batch_size=16, val_data=(x, y),
      ...                                  eval_step=jr.make_eval_step(apply_fn, loss_fn))
      >>> [h["val_loss"][-1] < h["val_loss"][0] for h in histories]
      [True, True]
    """
    if hparams is None:
        raise ValueError("sweep_fit needs hparams (a pytree of arrays with a leading member axis).")
    num = _num_members("hparams", hparams)
    return fit_members(
        _repeat_members(state, num), make_step, train_data, epochs=epochs, batch_size=batch_size,
        hparams=hparams, **kwargs,
    )


def kfold_fit(
    state: TrainState,
    train_step: Callable[..., Any],
    data: tuple,
    *,
    k: int,
    epochs: int,
    batch_size: int,
    eval_step: Callable[..., dict[str, jax.Array]],
    key: KeyArray | None = None,
    hparams: PyTree | None = None,
    **kwargs: Any,
) -> tuple[TrainState, list[dict[str, list]]]:
    """k-fold cross-validation: train the ``k`` folds (times an optional sweep) as one vmapped program.

    The folds are :func:`kfold_masks` ``(num_examples, k, key=key)``; fold ``f`` trains on ``data`` weighted by
    ``masks[f]`` and validates, after every epoch, on the same ``data`` weighted by ``~masks[f]``, so its
    ``val_*`` history is the held-out score of that fold. Every fold starts from the same ``state`` (same
    initial params and key). With ``hparams`` (``G`` settings) there are ``G * k`` members, ordered setting
    by setting: member ``g * k + f`` is setting ``g`` on fold ``f`` (``reshape(G, k)`` to average over folds).

    Args:
      state: one :class:`jaxreg.TrainState` (not stacked); copied, so it stays valid.
      train_step: a step from :func:`jaxreg.make_train_step` (``jit=False`` preferred); with ``hparams``, a
        function ``hparams_i -> step`` (see :func:`fit_members`).
      data: ``(x, y)`` or ``(x, y, weights)``: the whole dataset; optional per-example ``weights`` (shape
        ``(num_examples,)``) multiply the fold masks.
      k: number of folds, an int in ``[2, num_examples]``.
      epochs: the epoch number to stop before.
      batch_size: examples per step, drawn from the whole dataset (about ``(k - 1) / k`` of them count).
      eval_step: from :func:`jaxreg.make_eval_step`.
      key: optional ``jax.random`` key to shuffle the examples before splitting (as :func:`kfold_masks`).
      hparams: optional pytree of arrays with a leading axis of ``G`` settings, crossed with the folds.
      **kwargs: other keyword arguments of :func:`fit_members` (``early_stopping``, ``monitor``,
        ``eval_train``, ``norms_mask``, ``on_epoch_end``...).

    Returns:
      ``(states, histories)`` as :func:`fit_members`, with ``k`` (or ``G * k``) members.

    Raises:
      ValueError, TypeError: as :func:`kfold_masks` and :func:`fit_members`; also if ``data`` is not a 2- or
      3-tuple or ``kwargs`` holds ``val_data``/``train_weights``/``val_weights`` (the folds define them).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> x = jax.random.normal(jax.random.key(1), (60, 3))
      >>> y = x @ jnp.array([1.0, -1.0, 0.5])
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, tx, jax.random.key(0))
      >>> states, histories = jr.kfold_fit(state, jr.make_train_step(apply_fn, loss_fn, tx, jit=False), (x, y),
      ...                                  k=3, epochs=4, batch_size=10,
      ...                                  eval_step=jr.make_eval_step(apply_fn, loss_fn))
      >>> states.params["w"].shape, len(histories)
      ((3, 3), 3)
      >>> cv_loss = np.mean([h["val_loss"][-1] for h in histories])   # the cross-validated loss
      >>> bool(cv_loss < histories[0]["val_loss"][0])
      True
    """
    for name in ("val_data", "train_weights", "val_weights"):
        if name in kwargs:
            raise ValueError(f"kfold_fit defines {name} from the folds; do not pass {name}.")
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise TypeError(f"data must be a tuple (x, y) or (x, y, weights), got data = {type(data).__name__}.")
    x, y = data[0], data[1]
    n = _num_examples_of("data", jax.tree.map(jnp.asarray, x), jax.tree.map(jnp.asarray, y))
    masks = kfold_masks(n, k, key=key)
    train_w = masks.astype(np.float32)
    val_w = (~masks).astype(np.float32)
    if len(data) == 3:
        w = np.asarray(data[2], dtype=np.float32)
        if w.shape != (n,):
            raise ValueError(f"data weights must have shape ({n},), got shape {w.shape}.")
        train_w, val_w = train_w * w, val_w * w
    num = k
    if hparams is not None:
        settings = _num_members("hparams", hparams)
        hparams = jax.tree.map(lambda a: jnp.repeat(jnp.asarray(a), k, axis=0), hparams)
        train_w, val_w = np.tile(train_w, (settings, 1)), np.tile(val_w, (settings, 1))
        num = settings * k
    return fit_members(
        _repeat_members(state, num), train_step, (x, y), epochs=epochs, batch_size=batch_size,
        hparams=hparams, train_weights=train_w, val_data=(x, y), val_weights=val_w, eval_step=eval_step,
        **kwargs,
    )
