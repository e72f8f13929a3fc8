"""Early stopping as a traceable state machine (floor 3).

:class:`EarlyStopping` holds the hyperparameters (static Python values); its :meth:`~EarlyStopping.init`
and :meth:`~EarlyStopping.update` are pure functions over an :class:`EarlyStoppingState` of JAX arrays, so
the whole rule runs inside ``jax.jit``, inside ``lax.scan`` / ``lax.while_loop`` (loop until
``state.should_stop``), and under ``jax.vmap`` (one stopper per model of a sweep or per fold)::

    stopper = jr.EarlyStopping(patience=5)
    state = stopper.init(params)
    ...                                   # each epoch, inside or outside jit:
    state = stopper.update(state, val_loss, params)
    ...
    params = stopper.final_params(state, params)   # best params, as Keras' restore_best_weights

The rule is Keras 3's ``keras.callbacks.EarlyStopping``, update for update (``step`` plays the role of
Keras' ``epoch``, counted from 0), with one deliberate difference: a NaN value never counts as an
improvement (Keras would take a NaN at the first monitored epoch as its best and then never improve on it).

``mode="auto"`` (the default, as in Keras) picks the direction from the monitored metric's name with Keras'
rule (a name containing ``"acc"`` or ``"auc"``, or starting with ``"fmeasure"``, is maximized; anything
else, a loss, minimized). :func:`jaxreg.fit` and :func:`jaxreg.fit_members` know the name
(their ``monitor=``) and resolve it with :meth:`EarlyStopping.for_monitor`. A stopper used on its own never
learns the name: there ``"auto"`` means ``"min"``, Keras' resolution for its default monitor ``"val_loss"``;
call ``stopper.for_monitor("val_accuracy")`` or pass ``mode="max"`` to watch an accuracy.

Compared with ``flax.training.early_stopping.EarlyStopping``, whose ``update`` branches in Python on the
metric (a ``ConcretizationTypeError`` under ``jit``), this one traces, keeps the best parameters for
restoring, and has Keras' ``mode="max"``, ``baseline`` and ``start_from_epoch`` (here ``start_from_step``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxreg._typing import PyTree
from jaxreg._validate import check_choice, check_in_range, check_number, check_positive_int

__all__ = ["EarlyStopping", "EarlyStoppingState"]

_MODES = ("auto", "min", "max")


def _auto_mode(monitor: str) -> str:
    """Keras' ``mode="auto"``: ``"max"`` for a metric named like an accuracy or an AUC, else ``"min"``.

    The rule of ``keras.callbacks.EarlyStopping`` (Keras 2): ``"acc"`` or ``"auc"`` anywhere in the name, or
    a name starting with ``"fmeasure"``, is maximized; every other name (``"val_loss"``, ``"train_loss"``,
    ``"mse"``...) is minimized. For the metrics :func:`jaxreg.fit` records it agrees with Keras 3, which
    minimizes ``"loss"`` and maximizes ``"accuracy"`` (a metric whose direction is up).
    """
    if not isinstance(monitor, str):
        raise TypeError(f"monitor must be a metric name (a str), got monitor = {monitor!r}.")
    if "acc" in monitor or "auc" in monitor or monitor.startswith("fmeasure"):
        return "max"
    return "min"


class EarlyStoppingState(NamedTuple):
    """State of one early stopper; every array field gains a leading axis per member under ``jax.vmap``.

    ``best_params`` is ``None`` when ``restore_best=False``, so the pytree structure is fixed by the
    stopper's configuration and never changes between updates (as ``lax.scan`` / ``while_loop`` need).
    """

    step: jax.Array  # shape=(), int32: updates seen so far (the next update is step number `step`)
    wait: jax.Array  # shape=(), int32: Keras' `wait`: monitored steps since the last reset
    best_value: jax.Array  # shape=(), float32: best monitored value; NaN until the first improvement
    best_step: jax.Array  # shape=(), int32: step whose params `best_params` holds; -1 before monitoring
    best_params: PyTree  # params at `best_step` (restore_best=True), else None
    has_improved: jax.Array  # shape=(), bool: whether the latest update improved `best_value`
    should_stop: jax.Array  # shape=(), bool: stop now; once True the whole state is frozen
    stopped_step: jax.Array  # shape=(), int32: the step at which `should_stop` became True; -1 before


@dataclasses.dataclass(frozen=True, init=False)
class EarlyStopping:
    """Keras-style early stopping whose state is a pytree, usable under ``jit``, ``scan`` and ``vmap``.

    Each :meth:`update` is one monitored step (Keras: one ``on_epoch_end``); steps are counted from 0. A step
    *improves* when the value beats the best so far by more than ``min_delta`` (``value + min_delta < best``
    for ``mode="min"``, ``value - min_delta > best`` for ``"max"``; the first monitored non-NaN value always
    improves). Exactly as Keras 3:

    * steps before ``start_from_step`` are ignored (only ``step`` advances);
    * every monitored step adds 1 to ``wait``; an improvement resets ``wait`` to 0, but when a ``baseline``
      is given only if the value also beats the baseline (by more than ``min_delta``);
    * a monitored step that does not improve stops training when ``wait >= patience`` and ``step > 0``, so
      with ``patience=0`` the first step without improvement stops;
    * ``best_params`` takes the params of the first monitored step and then of each improving step; it is
      kept even when no step beats ``baseline`` (Keras restores "the best epoch in that set").

    Deviation from Keras: a NaN value is never an improvement (it counts towards ``wait``); Keras would take
    a NaN at the first monitored epoch as its best value. Once ``should_stop`` is True, later updates return
    the state unchanged, as if the training loop had stopped calling the callback.

    Args:
      patience: number of monitored steps without improvement after which to stop; an int >= 0.
      min_delta: an improvement must beat the best value by more than this; a float >= 0.
      mode: ``"min"`` (a loss), ``"max"`` (an accuracy) or ``"auto"`` (the default: resolved from the
        monitored name by :func:`jaxreg.fit` / :meth:`for_monitor` with Keras' rule; ``"min"`` when the name
        is never given, see the module docstring).
      baseline: optional value to beat: while no step beats it, ``wait`` is never reset, so training stops
        after ``patience`` non-improving steps. ``None`` for none.
      start_from_step: number of warm-up steps that are not monitored; an int >= 0 (Keras'
        ``start_from_epoch``).
      restore_best: keep the params of the best step in the state so that :meth:`final_params` returns them
        (Keras' ``restore_best_weights``, which defaults to False there). Costs one copy of the params.

    Raises:
      ValueError: if ``patience`` or ``start_from_step`` is negative, ``min_delta`` is negative or NaN,
        ``baseline`` is NaN, or ``mode`` is not ``"auto"``/``"min"``/``"max"``; the message names the argument.
      TypeError: if an integer argument is not an int, a float argument not a real number, or
        ``restore_best`` not a bool.

    Shapes and dtypes: values are cast to float32 scalars; counters are int32 scalars.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> stopper = jr.EarlyStopping(patience=2)
      >>> params = {"w": jnp.zeros(2)}
      >>> state = stopper.init(params)
      >>> update = jax.jit(stopper.update)
      >>> for epoch, val_loss in enumerate([1.0, 0.5, 0.6, 0.7, 0.4]):
      ...     params = {"w": jnp.full(2, float(epoch))}   # the params after this epoch
      ...     state = update(state, val_loss, params)
      ...     if state.should_stop:
      ...         break
      >>> print(int(state.stopped_step), int(state.best_step), float(state.best_value))
      3 1 0.5
      >>> stopper.final_params(state, params)["w"]
      Array([1., 1.], dtype=float32)
    """

    patience: int
    min_delta: float = 0.0
    mode: str = "auto"
    baseline: float | None = None
    start_from_step: int = 0
    restore_best: bool = True

    def __init__(
        self,
        patience: int,
        *,
        min_delta: float = 0.0,
        mode: str = "auto",
        baseline: float | None = None,
        start_from_step: int = 0,
        restore_best: bool = True,
    ) -> None:
        patience = check_positive_int("patience", patience, minimum=0)
        min_delta = check_number("min_delta", min_delta)
        check_in_range("min_delta", min_delta, 0.0, None)
        check_choice("mode", mode, _MODES)
        if baseline is not None:
            baseline = check_number("baseline", baseline)
            check_in_range("baseline", baseline, finite=False)  # rejects NaN, allows +-inf
        start_from_step = check_positive_int("start_from_step", start_from_step, minimum=0)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be a bool, got restore_best = {restore_best!r}.")
        # frozen dataclass: assign through object.__setattr__ once, after validation.
        for name, value in (
            ("patience", patience),
            ("min_delta", min_delta),
            ("mode", mode),
            ("baseline", baseline),
            ("start_from_step", start_from_step),
            ("restore_best", bool(restore_best)),
        ):
            object.__setattr__(self, name, value)

    def for_monitor(self, monitor: str) -> EarlyStopping:
        """This stopper with ``mode="auto"`` resolved for the metric ``monitor`` by Keras' rule.

        ``"max"`` when the name contains ``"acc"`` or ``"auc"`` or starts with ``"fmeasure"`` (Keras 2's
        ``EarlyStopping``; for :func:`jaxreg.fit`'s metrics Keras 3 agrees: it maximizes ``"accuracy"``,
        whose direction is up, and minimizes ``"loss"``), else ``"min"``. An explicit ``"min"``/``"max"`` is
        kept. :func:`jaxreg.fit` and :func:`jaxreg.fit_members` call this with their ``monitor``; the state is
        the same for every mode, so ``init`` may come before or after.

        Raises:
          TypeError: if ``monitor`` is not a str.

        Example:
          >>> import jaxreg as jr
          >>> jr.EarlyStopping(3).for_monitor("val_accuracy").mode, jr.EarlyStopping(3).for_monitor("val_loss").mode
          ('max', 'min')
        """
        resolved = _auto_mode(monitor)
        return self if self.mode != "auto" else dataclasses.replace(self, mode=resolved)

    def init(self, params: PyTree = None) -> EarlyStoppingState:
        """The state before the first update.

        Args:
          params: the initial params; only their structure, shapes and dtypes matter (``best_params`` starts
            as a copy of them). Required when ``restore_best=True``, ignored otherwise.

        Returns:
          An :class:`EarlyStoppingState` with ``step=0``, ``wait=0``, ``best_value=NaN``, ``best_step=-1``,
          ``should_stop=False``, ``stopped_step=-1``. To get one stopper per member of a stacked sweep, use
          ``jax.vmap(stopper.init)(stacked_params)``.

        Raises:
          ValueError: if ``restore_best=True`` and ``params`` is None.

        Example:
          >>> import jax.numpy as jnp
          >>> import jaxreg as jr
          >>> state = jr.EarlyStopping(patience=3).init({"w": jnp.ones(2)})
          >>> print(int(state.step), int(state.best_step), bool(state.should_stop), state.best_params["w"])
          0 -1 False [1. 1.]
        """
        best_params = None
        if self.restore_best:
            if params is None:
                raise ValueError(
                    "EarlyStopping.init needs params when restore_best=True; pass the initial params."
                )
            best_params = jax.tree.map(jnp.array, params)  # a copy: donating a state must not alias params
        return EarlyStoppingState(
            step=jnp.zeros((), jnp.int32),
            wait=jnp.zeros((), jnp.int32),
            best_value=jnp.full((), jnp.nan, jnp.float32),
            best_step=jnp.asarray(-1, jnp.int32),
            best_params=best_params,
            has_improved=jnp.zeros((), jnp.bool_),
            should_stop=jnp.zeros((), jnp.bool_),
            stopped_step=jnp.asarray(-1, jnp.int32),
        )

    def _beats(self, value: jax.Array, reference: jax.Array | float) -> jax.Array:
        """Whether ``value`` is better than ``reference`` by more than ``min_delta`` (False for NaNs)."""
        if self.mode != "max":  # "auto" without a monitor name: Keras' default monitor, val_loss, is minimized
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def update(self, state: EarlyStoppingState, value: ArrayLike, params: PyTree = None) -> EarlyStoppingState:
        """Record one monitored step (Keras' ``on_epoch_end``) and return the new state.

        Args:
          state: the current state (from :meth:`init` or a previous update).
          value: the monitored scalar for this step, e.g. the validation loss; cast to float32. May be traced.
          params: the params after this step, kept as ``best_params`` if this step improves. Required when
            ``restore_best=True``, ignored otherwise. Leaves are cast to the dtypes given to :meth:`init`.

        Returns:
          The new state; equal to ``state`` when ``state.should_stop`` was already True.

        Raises:
          ValueError: if ``value`` is not a scalar, or ``restore_best=True`` and ``params`` is None.

        Example:
          >>> import jax, jax.numpy as jnp
          >>> import jaxreg as jr
          >>> stopper = jr.EarlyStopping(patience=2, min_delta=0.1, restore_best=False)
          >>> losses = jnp.array([1.0, 0.95, 0.5, 0.45, 0.44, 0.3])
          >>> def step(state, loss):
          ...     state = stopper.update(state, loss)
          ...     return state, state.should_stop
          >>> state, stops = jax.lax.scan(step, stopper.init(), losses)
          >>> stops
          Array([False, False, False, False,  True,  True], dtype=bool)
          >>> print(int(state.stopped_step), float(state.best_value))
          4 0.5
        """
        value = jnp.asarray(value)
        if value.ndim != 0:
            raise ValueError(
                f"EarlyStopping.update needs a scalar value, got shape {value.shape}; under jax.vmap pass "
                "one value per member."
            )
        if self.restore_best and params is None:
            raise ValueError(
                "EarlyStopping.update needs params when restore_best=True; pass the current params."
            )
        value = value.astype(state.best_value.dtype)
        step = state.step
        monitored = step >= self.start_from_step
        # NaN best_value plays Keras' `best is None`; a NaN value never improves.
        improves_best = jnp.isnan(state.best_value) | self._beats(value, state.best_value)
        improved = monitored & ~jnp.isnan(value) & improves_best
        resets_wait = improved if self.baseline is None else improved & self._beats(value, self.baseline)
        # Keras takes the weights of the first monitored epoch even before any improvement.
        takes_params = improved | (monitored & (state.best_step < 0))
        wait = jnp.where(monitored, jnp.where(resets_wait, 0, state.wait + 1), state.wait)
        stop = monitored & ~improved & (wait >= self.patience) & (step > 0)
        best_params = None
        if self.restore_best:
            best_params = jax.tree.map(
                lambda best, new: jnp.where(takes_params, jnp.asarray(new).astype(best.dtype), best),
                state.best_params,
                params,
            )
        new_state = EarlyStoppingState(
            step=step + 1,
            wait=wait,
            best_value=jnp.where(improved, value, state.best_value),
            best_step=jnp.where(takes_params, step, state.best_step),
            best_params=best_params,
            has_improved=improved,
            should_stop=stop,
            stopped_step=jnp.where(stop, step, state.stopped_step),
        )
        frozen = state.should_stop
        return jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state, new_state)

    def final_params(self, state: EarlyStoppingState, params: PyTree) -> PyTree:
        """The params to keep at the end of training: the best ones when ``restore_best``, else ``params``.

        As Keras' ``on_train_end`` with ``restore_best_weights=True``: the best params are returned whenever
        at least one step was monitored (whether or not training stopped early); before that, and always when
        ``restore_best=False``, the current ``params`` are returned. Works under ``jit`` and ``vmap``.

        Args:
          state: the final state.
          params: the current (last) params.

        Returns:
          A pytree with the structure of ``params``.

        Example:
          >>> import jax.numpy as jnp
          >>> import jaxreg as jr
          >>> stopper = jr.EarlyStopping(patience=5)
          >>> state = stopper.init(jnp.zeros(()))
          >>> for epoch, val_loss in enumerate([0.9, 0.2, 0.4]):
          ...     state = stopper.update(state, val_loss, jnp.float32(epoch))
          >>> stopper.final_params(state, jnp.float32(2.0))
          Array(1., dtype=float32)
        """
        if not self.restore_best:
            return params
        has_best = state.best_step >= 0
        return jax.tree.map(
            lambda best, current: jnp.where(has_best, best, jnp.asarray(current).astype(best.dtype)),
            state.best_params,
            params,
        )
