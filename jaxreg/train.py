"""Training state and one compiled training step with every regularizer inside it (floor 5).

The pieces, each usable on its own::

    state = jr.create_train_state(params, tx, key, model_state=variables_without_params)
    train_step = jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, 1e-4, jr.kernel_mask)])
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    state, metrics = train_step(state, x_batch, y_batch)              # one jitted, donated step

The loop above the step (:mod:`jaxreg.loop`): ``jr.make_train_epoch`` (a ``lax.scan`` over shuffled batches),
``jr.fit`` and ``jr.fit_members`` (the same epoch program, vmapped over k folds or a sweep)::

    state, history = jr.fit(state, train_step, (x, y), epochs=20, batch_size=64,
                            val_data=(x_val, y_val), eval_step=evaluate,
                            early_stopping=jr.EarlyStopping(patience=5))

**Model contract.** A model is ``apply_fn(params, model_state, x, *, key, training) -> (outputs,
new_model_state)``: ``params`` are the trained leaves, ``model_state`` the non-trained collections (e.g.
``{"batch_stats": ...}``; ``{}`` when there are none), ``key`` a ``jax.random`` key for the step's noise
(dropout, noise layers; ``None`` in evaluation) and ``training`` a Python bool. ``new_model_state`` must
have the structure of ``model_state`` (a skipped step selects between the two); in evaluation it is ignored.
:func:`jaxreg.linen_apply` adapts a ``flax.linen`` module whose ``__call__`` takes ``train``, :func:`jaxreg.nnx_apply` a
``flax.nnx`` module (both live in :mod:`jaxreg.flax`).

**Loss contract.** ``loss_fn(outputs, y) -> per-example loss`` of shape ``(batch,)`` (trailing axes are
averaged), e.g. ``optax.softmax_cross_entropy_with_integer_labels``. With per-example ``weights`` (k-fold
masks, class weights) the task loss is ``sum(w * l) / max(sum(w), 1)``; zero weights exclude examples.

**Penalties** are :class:`Penalty` ``(fn, coefficient, mask)`` named tuples (plain 2- or 3-tuples work too) added
to the loss as ``coefficient * fn(params, mask=mask)``; ``jr.l1``, ``jr.l2``, ``jr.elastic_net``...
fit. A coefficient may be a traced array: to sweep it under ``jax.vmap`` build the step inside the vmapped
function, ``jax.vmap(lambda c, s: make_train_step(..., penalties=[(jr.l2, c, None)], jit=False)(s, x, y))``.
Optimizer-side regularizers (decoupled decay, proximal steps, max-norm) go into the optax ``optimizer``.

**Randomness.** Everything derives from ``state.key``: the noise of step ``k`` uses
``jax.random.fold_in(state.key, k)`` (so a step's dropout masks depend only on the key and the step number,
whatever happened before), and epoch ``e`` is shuffled by ``jax.random.permutation(jax.random.fold_in(
shuffle_root, e), n)`` where ``shuffle_root = jax.random.fold_in(state.key, 2**32 - 1)``, a stream no int32
step number reaches. Same key and data give bitwise identical params and history.

**Non-finite updates.** When the loss or any gradient is NaN/inf, the step keeps ``params``, ``opt_state`` and
``model_state`` unchanged (a ``jnp.where`` select, so it also works under ``vmap``), adds 1 to
``state.skipped`` and reports ``skipped=1`` in its metrics. ``state.step`` still advances, so the next step
draws fresh noise.

**Extra arguments of the optimizer.** When ``optimizer`` is an ``optax.GradientTransformationExtraArgs`` (any
``optax.chain``, ``optax.adam``...), the step calls ``optimizer.update(grads, opt_state, params, value=v)``
with ``v`` the step's ``value`` argument, or its own total (task + penalty) loss when ``value`` is None, which
is what ``optax.contrib.reduce_on_plateau`` and ``optax.polyak_sgd`` read. :func:`jaxreg.fit` passes the latest
validation loss as ``value`` to every step of an epoch; give ``reduce_on_plateau`` an ``accumulation_size``
of ``num_train // batch_size`` (the steps per epoch) so that its patience counts epochs. Because optax 0.2.8
is not clean under ``jax_numpy_dtype_promotion="strict"`` (``optax.adam``'s bias correction raises a Python
float to an int32 count; ``reduce_on_plateau`` multiplies an int32 count by a float32 average), the
optimizer update is traced under ``jax.numpy_dtype_promotion("standard")``; the loss and penalties are not.

**Donation.** The jitted step and epoch donate their ``state`` argument: after ``state2, _ =
train_step(state, ...)`` the old ``state`` is invalid. :func:`create_train_state` copies every leaf
(``params``, ``model_state``, ``key``...) so that the caller's arrays survive and no buffer appears twice.

**Vectorizing (k folds, sweeps).** With ``jit=False`` the step, the epoch and the evaluation are plain pure
functions of the state: stack states with ``jax.vmap(lambda k: create_train_state(params, tx, k))(keys)``
and run ``jax.jit(jax.vmap(make_train_epoch(step, batch_size=b, jit=False), in_axes=(0, None, None, None,
0)))(states, x, y, epoch, fold_weights)`` to train every fold on the same on-device data, each weighting
its loss by its own mask (an all-zero batch still makes a zero-gradient optimizer step). The shuffle and
the noise then differ per member because the keys do.

Example:
  >>> import jax, jax.numpy as jnp, optax, flax.linen as nn
  >>> import jaxreg as jr
  >>> class MLP(nn.Module):
  ...     @nn.compact
  ...     def __call__(self, x, train: bool):
  ...         x = nn.relu(nn.Dense(8)(x))
  ...         x = nn.Dropout(0.5, deterministic=not train)(x)
  ...         return nn.Dense(3)(x)
  >>> model = MLP()
  >>> x = jax.random.normal(jax.random.key(1), (64, 4))
  >>> y = jnp.arange(64) % 3
  >>> params = model.init(jax.random.key(0), x, train=False)["params"]
  >>> tx = optax.adam(1e-2)
  >>> state = jr.create_train_state(params, tx, jax.random.key(2))
  >>> step = jr.make_train_step(jr.linen_apply(model), optax.softmax_cross_entropy_with_integer_labels,
  ...                           tx, penalties=[(jr.l2, 1e-4, jr.kernel_mask)])
  >>> state, metrics = step(state, x[:16], y[:16])
  >>> sorted(metrics), int(state.step)
  (['accuracy', 'grad_norm', 'loss', 'penalty', 'skipped'], 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxreg._typing import ApplyFn, KeyArray, MaskOrFn, PyTree
from jaxreg._validate import check_bool, check_callable, check_choice, check_in_range, check_key, check_positive_int
from jaxreg.consistency import check_consistency, joint_forward
from jaxreg.averaging import WeightAverages, averaged_params, init_averages, update_averages
from jaxreg.early_stopping import EarlyStopping
from jaxreg._losses import check_batch as _check_batch
from jaxreg._step_args import accepted_extra_args as _accepted_extra_args
from jaxreg._step_args import augmented as _augmented
from jaxreg._step_args import check_output_penalties as _check_output_penalties
from jaxreg._losses import is_classification as _is_classification
from jaxreg._losses import per_example as _per_example
from jaxreg._losses import weighted_mean as _weighted_mean
from jaxreg.metrics import accuracy
from jaxreg.output_penalties import input_gradient_penalty, jacobian_penalty, symmetric_kl

__all__ = [
    "Penalty",
    "TrainState",
    "create_train_state",
    "make_train_step",
    "make_eval_step",
]


LossFn = Callable[[Any, Any], jax.Array]
"""``loss_fn(outputs, y) -> per-example loss``, shape ``(batch,)``."""

AugmentFn = Callable[[KeyArray, Any, Any], tuple[Any, Any]]
"""``augment(key, x, y) -> (x, y)``: the engine's in-step augmentation hook."""

# fold_in data of the step's own random streams besides the model's noise (fold_in(key, step)): uint32
# values no int32 step number reaches (2**32 - 1 is the shuffle stream, jaxreg.epoch).
AUGMENT_STREAM = 2**32 - 2
PROJECTION_STREAM = 2**32 - 3
CONSISTENCY_STREAM = 2**32 - 4


def stream_key(key: KeyArray, stream: int, step: ArrayLike) -> KeyArray:
    """The key of ``step`` on one of the step's streams: ``fold_in(fold_in(key, stream), step)``.

    Example:
      >>> import jax
      >>> from jaxreg.train import AUGMENT_STREAM, stream_key
      >>> k = stream_key(jax.random.key(0), AUGMENT_STREAM, 3)
      >>> bool((jax.random.key_data(k) != jax.random.key_data(jax.random.fold_in(jax.random.key(0), 3))).any())
      True
    """
    return jax.random.fold_in(jax.random.fold_in(key, stream), step)

class Penalty(NamedTuple):
    """A coupled penalty of the training step: ``coefficient * fn(params, mask=mask)`` is added to the loss.

    Plain ``(fn, coefficient)`` and ``(fn, coefficient, mask)`` tuples are accepted wherever a ``Penalty`` is.

    Attributes:
      fn: ``fn(params, *, mask) -> scalar``, e.g. :func:`jaxreg.l2` or
        ``functools.partial(jr.elastic_net, alpha=1e-3)``.
      coefficient: a float >= 0, or a traced scalar (a strength swept under ``jax.vmap``).
      mask: which leaves ``fn`` sees (:func:`jaxreg.kernel_mask`, a bool pytree, a callable); None: all.

    Example:
      >>> import jaxreg as jr
      >>> jr.Penalty(jr.l2, 1e-4, jr.kernel_mask).coefficient
      0.0001
    """

    fn: Callable[..., jax.Array]
    coefficient: ArrayLike
    mask: MaskOrFn = None


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes, as one pytree (donated to, and returned by, the step).

    Attributes:
      params: the trained parameters.
      model_state: non-trained model collections, e.g. ``{"batch_stats": ...}``; ``{}`` when there are none.
      opt_state: the optax optimizer state.
      key: the root ``jax.random`` key; step ``k`` uses ``jax.random.fold_in(key, k)``. Never changes.
      step: shape=(), int32: number of steps taken (including skipped ones).
      skipped: shape=(), int32: number of steps whose update was skipped because of a non-finite loss/grad.
      stopper: the :class:`jaxreg.EarlyStoppingState` (tracking ``{"params": ..., "model_state": ...}``) or
        None: the loop's field (:func:`jaxreg.fit` updates it inside its epoch program), never the step's.
      averages: the :class:`jaxreg.averaging.WeightAverages` (EMA, SWA) the step updates, or None.

    Under ``jax.vmap`` (k folds, a sweep) every field gains a leading member axis. Use ``state.replace(...)``
    to change fields.
    """

    params: PyTree
    model_state: PyTree
    opt_state: optax.OptState
    key: KeyArray
    step: jax.Array
    skipped: jax.Array
    stopper: Any = None
    averages: WeightAverages | None = None

    @property
    def ema_params(self) -> PyTree:
        """The exponential moving average of the params (``create_train_state(..., ema_decay=d)``), or None."""
        return None if self.averages is None else self.averages.ema

    @property
    def swa_params(self) -> PyTree:
        """The SWA average of the params (``create_train_state(..., swa_start=s)``), or None."""
        return None if self.averages is None else self.averages.swa


def _copy_tree(tree: PyTree) -> PyTree:
    # Fresh buffers for every leaf: the state is donated, and donating a caller's array (params, key) or one
    # buffer twice (an init that reuses a constant for two fields) fails or invalidates the caller's arrays.
    return jax.tree.map(lambda a: jnp.array(a, copy=True), tree)


def create_train_state(
    params: PyTree,
    optimizer: optax.GradientTransformation,
    key: KeyArray,
    *,
    model_state: PyTree | None = None,
    early_stopping: EarlyStopping | None = None,
    ema_decay: ArrayLike | None = None,
    swa_start: int | None = None,
) -> TrainState:
    """A fresh :class:`TrainState`: ``opt_state = optimizer.init(params)``, ``step = skipped = 0``.

    Args:
      params: the initial parameters. Every leaf of the returned state is a fresh copy, so the caller's
        ``params`` and ``key`` stay valid after the state is donated to a step.
      optimizer: the optax transformation the step will use.
      key: the root ``jax.random`` key (typed ``jax.random.key`` or legacy ``PRNGKey``).
      model_state: non-trained collections, e.g. ``{"batch_stats": ...}`` from ``module.init``; ``None`` -> ``{}``.
      early_stopping: a :class:`jaxreg.EarlyStopping`; if given, ``stopper`` is its initial state tracking
        ``{"params": params, "model_state": model_state}``.
      ema_decay: keep an exponential moving average of the params with this decay in [0, 1)
        (``state.ema_params``, updated by every applied step; :mod:`jaxreg.averaging`).
      swa_start: keep the equal-weight (SWA) average of the params from this step on (``state.swa_params``).

    Returns:
      A :class:`TrainState`.

    Raises:
      ValueError: if ``key`` is None, ``ema_decay`` is outside [0, 1) or ``swa_start`` negative.
      TypeError: if ``key`` is not one ``jax.random`` key, ``optimizer`` has no ``init``/``update``,
        ``early_stopping`` is not a :class:`jaxreg.EarlyStopping`, or ``swa_start`` not an int.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> state = jr.create_train_state({"w": jnp.zeros(3)}, optax.sgd(0.1), jax.random.key(0))
      >>> print(state.step, state.skipped, state.model_state, state.stopper)
      0 0 {} None
    """
    check_key(key, "create_train_state")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got optimizer = {optimizer!r}.")
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be a jr.EarlyStopping, got early_stopping = {early_stopping!r}.")
    model_state = {} if model_state is None else model_state
    stopper = None
    if early_stopping is not None:
        stopper = early_stopping.init({"params": params, "model_state": model_state})
    state = TrainState(
        params=params,
        model_state=model_state,
        opt_state=optimizer.init(params),
        key=key,
        step=jnp.zeros((), jnp.int32),
        skipped=jnp.zeros((), jnp.int32),
        stopper=stopper,
        averages=init_averages(params, ema_decay=ema_decay, swa_start=swa_start),
    )
    return _copy_tree(state)


def _check_penalties(penalties: Sequence[Penalty | tuple]) -> tuple[Penalty, ...]:
    out = []
    for i, entry in enumerate(penalties):
        if not isinstance(entry, (tuple, list)) or len(entry) not in (2, 3):
            raise TypeError(
                f"penalties[{i}] must be a jr.Penalty(fn, coefficient, mask) or a (fn, coefficient[, mask]) "
                f"tuple, got penalties[{i}] = {entry!r}."
            )
        penalty = Penalty(*entry)
        check_callable(f"penalties[{i}] fn", penalty.fn)
        check_in_range(f"penalties[{i}] coefficient", penalty.coefficient, 0.0, None, scalar=True)
        out.append(penalty)
    return tuple(out)


def _select(pred: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def make_train_step(
    apply_fn: ApplyFn,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    penalties: Sequence[Penalty | tuple] = (),
    output_penalties: Sequence[tuple] = (),
    activity_penalties: Sequence[tuple] = (),
    augment: AugmentFn | None = None,
    rdrop: ArrayLike | None = None,
    consistency: tuple | None = None,
    input_gradient: ArrayLike | None = None,
    jacobian: ArrayLike | None = None,
    jacobian_projections: int = 1,
    donate: bool = True,
    jit: bool = True,
) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
    """Build ``step(state, x, y, weights=None, value=None) -> (state, metrics)``: forward, loss, grad, update.

    One step: ``key = fold_in(state.key, state.step)``; ``outputs, model_state = apply_fn(params,
    state.model_state, x, key=key, training=True)``; ``loss = weighted_mean(loss_fn(outputs, y)) +
    sum(c * penalty_fn(params, mask=m))``; ``grads = grad(loss)``; ``optimizer.update`` (with ``value=`` for an
    extra-args optimizer, see the module docstring); apply the updates unless the loss or a gradient is
    non-finite (then count the step in ``state.skipped`` and keep the old params, optimizer and model state).

    Args:
      apply_fn: the model, ``apply_fn(params, model_state, x, *, key, training) -> (outputs, model_state)``.
      loss_fn: ``loss_fn(outputs, y) -> per-example loss``.
      optimizer: an optax transformation (e.g. an ``optax.chain`` holding jaxreg transforms).
      penalties: :class:`Penalty` s (or ``(fn, coefficient[, mask])`` tuples); concrete coefficients must be
        >= 0, traced ones pass unchecked.
      output_penalties: ``(fn, coefficient)`` pairs, ``fn(outputs, y) -> scalar`` on the training-mode
        outputs, added to the loss (e.g. ``(lambda o, y: jr.confidence_penalty(o), 0.1)``).
      activity_penalties: ``(fn, coefficient)`` pairs, ``fn(activities) -> scalar`` on the intermediate
        activations the model records in training mode: the step calls ``apply_fn(...,
        capture_activities=True)``, which must return ``(outputs, model_state, activities)``;
        :func:`jaxreg.linen_apply` returns what the module ``sow``s, :func:`jaxreg.nnx_apply` what it sows
        as ``nnx.Intermediate``. Keras' ``Dense(..., activity_regularizer=L2(c))`` is ``(functools.partial(
        jr.activity_l2, batch_mean=True), c)`` on that layer's sown output.
      augment: ``augment(key, x, y) -> (x, y)`` applied to every training batch inside the step (never in
        evaluation), with the key of the step on its own stream (``stream_key(state.key, AUGMENT_STREAM,
        step)``, not the dropout key). It must keep the batch size; it may turn labels soft (mixup, cutmix):
        ``loss_fn`` gets what it returns.
      rdrop: R-Drop's ``alpha``: two forward passes with different noise keys (``fold_in(key, 1)`` for the
        second), the task loss averaged over both, ``alpha * mean symmetric KL`` added (:func:`jaxreg.rdrop_loss`;
        the model needs dropout for it to do anything). Costs a second forward and backward pass.
      consistency: ``(views_fn, coefficient)``: ``views_fn(key, x)`` returns views of the batch (e.g.
        :func:`jaxreg.augmix_views`: AugMix's two views, with ``coefficient`` 12 in the paper); the batch and its
        views go through the model as one concatenated batch, the task loss and metrics take the clean part,
        and ``coefficient *`` the (weighted) mean :func:`jaxreg.jensen_shannon` of the predictions is added
        (keys on their own stream). Not combinable with ``rdrop`` or ``activity_penalties``.
      input_gradient: coefficient of :func:`jaxreg.input_gradient_penalty` (double backpropagation) of the
        (weighted) per-example task loss with respect to the (augmented) input batch.
      jacobian: coefficient of :func:`jaxreg.jacobian_penalty` of the outputs with respect to the input, with
        ``jacobian_projections`` random projections per step (keys on their own stream).
      donate: donate the ``state`` argument (``donate_argnums=0``) to reuse its buffers.
      jit: return the ``jax.jit``-compiled step (default) or the plain Python function, to ``vmap``/``scan``
        or to jit yourself.

    Returns:
      ``step(state, x, y, weights=None, value=None)``. ``weights``: optional per-example weights, shape
      ``(batch,)``. ``value``: optional scalar handed to the optimizer as ``value=``. The metrics dict holds
      float32 scalars ``loss`` (task loss, without penalties), ``penalty`` (weighted sum of penalties),
      ``grad_norm`` (global L2 norm of the gradient), ``accuracy`` (only for integer labels and
      ``(..., classes)`` outputs; the outputs are the training-mode ones, with dropout) and int32 ``skipped``
      (1 if this step's update was skipped). ``penalty`` holds every added term: penalties, output
      penalties, R-Drop's KL, input-gradient and Jacobian penalties. With a state from
      ``create_train_state(..., ema_decay=..., swa_start=...)`` every applied step also updates its averages.

    An ``optax.GradientTransformationExtraArgs`` optimizer gets the extra arguments its ``update`` takes:
    ``value`` (see the module docstring) and ``grad_fn(params, i)``, the gradient of this step's objective
    at other params (same batch and keys), which ``optax.contrib.sam(..., opaque_mode=True)`` calls for its
    adversarial steps: SAM in one compiled step.

    Raises:
      TypeError: if a function argument is not callable, a penalty or output-penalty entry is malformed, or
        ``donate``/``jit`` is not a bool. When traced: ``augment`` does not return a pair.
      ValueError: if a coefficient (penalties, output penalties, ``rdrop``, ``input_gradient``,
        ``jacobian``) is not a scalar or, when concrete, is negative or NaN; ``jacobian_projections`` < 1.
        When the step is traced (its first call): if ``outputs`` and ``y`` differ in their leading (batch)
        dimension, ``weights`` is not ``(batch,)``, ``augment`` changes the batch size, or an output penalty
        is not a scalar.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> def loss_fn(pred, y):
      ...     return (pred - y) ** 2
      >>> tx = optax.sgd(0.1)
      >>> state = jr.create_train_state({"w": jnp.zeros(2)}, tx, jax.random.key(0))
      >>> step = jr.make_train_step(apply_fn, loss_fn, tx)
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> state, metrics = step(state, x, jnp.array([1.0, jnp.nan]))   # NaN loss: update skipped
      >>> print(state.params["w"], state.skipped, metrics["skipped"])
      [0. 0.] 1 1
      >>> state, metrics = step(state, x, jnp.array([1.0, 3.0]), jnp.array([1.0, 0.0]))  # 2nd example off
      >>> print(state.params["w"], state.step, state.skipped)
      [0.2 0. ] 2 1
    """
    check_callable("apply_fn", apply_fn)
    check_callable("loss_fn", loss_fn)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an optax.GradientTransformation, got optimizer = {optimizer!r}.")
    penalties = _check_penalties(penalties)
    output_penalties = _check_output_penalties(output_penalties)
    activity_penalties = _check_output_penalties(activity_penalties, "activity_penalties", "fn(activities)")
    if augment is not None:
        check_callable("augment", augment)
    for name, coefficient in (("rdrop", rdrop), ("input_gradient", input_gradient), ("jacobian", jacobian)):
        if coefficient is not None:
            check_in_range(name, coefficient, 0.0, None, scalar=True)
    jacobian_projections = check_positive_int("jacobian_projections", jacobian_projections)
    consistency = check_consistency(consistency)
    if consistency is not None and (rdrop is not None or activity_penalties):
        raise ValueError("consistency cannot be combined with rdrop or activity_penalties (one forward pass each).")
    check_bool("donate", donate, "make_train_step")
    check_bool("jit", jit, "make_train_step")
    takes_extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)
    accepted = _accepted_extra_args(optimizer) if takes_extra_args else set()

    def train_step(state: TrainState, x: Any, y: Any, weights: ArrayLike | None = None, value: ArrayLike | None = None):
        noise_key = jax.random.fold_in(state.key, state.step)
        if augment is not None:
            x, y = _augmented(augment, stream_key(state.key, AUGMENT_STREAM, state.step), x, y)

        def forward(params, inputs, key):
            return apply_fn(params, state.model_state, inputs, key=key, training=True)

        def objective(params):
            activities = None
            if activity_penalties:
                result = apply_fn(params, state.model_state, x, key=noise_key, training=True,
                                  capture_activities=True)
                if not isinstance(result, tuple) or len(result) != 3:
                    raise ValueError("activity_penalties need apply_fn(..., capture_activities=True) to return "
                                     "(outputs, model_state, activities), as jr.linen_apply and jr.nnx_apply do.")
                outputs, model_state, activities = result
            elif consistency is not None:
                outputs, model_state, divergence = joint_forward(
                    lambda inputs, key: forward(params, inputs, key), x, noise_key,
                    stream_key(state.key, CONSISTENCY_STREAM, state.step), consistency[0])
            else:
                outputs, model_state = forward(params, x, noise_key)
            _check_batch(outputs, y, weights)
            task = _weighted_mean(loss_fn(outputs, y), weights)
            terms = [jnp.asarray(coef) * jnp.asarray(fn(params, mask=mask)) for fn, coef, mask in penalties]
            for i, (fn, coef) in enumerate(output_penalties):
                term = jnp.asarray(fn(outputs, y))
                if term.ndim:
                    raise ValueError(f"output_penalties[{i}] fn must return a scalar, got shape {term.shape}.")
                terms.append(jnp.asarray(coef) * term)
            for i, (fn, coef) in enumerate(activity_penalties):
                term = jnp.asarray(fn(activities))
                if term.ndim:
                    raise ValueError(f"activity_penalties[{i}] fn must return a scalar, got shape {term.shape}.")
                terms.append(jnp.asarray(coef) * term)
            if consistency is not None:
                terms.append(jnp.asarray(consistency[1]) * _weighted_mean(divergence, weights))
            if rdrop is not None:
                outputs_b, _ = forward(params, x, jax.random.fold_in(noise_key, 1))
                task = 0.5 * (task + _weighted_mean(loss_fn(outputs_b, y), weights))
                terms.append(jnp.asarray(rdrop) * _weighted_mean(symmetric_kl(outputs, outputs_b), weights))
            if input_gradient is not None:
                def losses_of_x(inputs):
                    losses = _per_example(loss_fn(forward(params, inputs, noise_key)[0], y))
                    return losses if weights is None else losses * jnp.asarray(weights).astype(losses.dtype)

                terms.append(jnp.asarray(input_gradient) * input_gradient_penalty(losses_of_x, x))
            if jacobian is not None:
                projections = stream_key(state.key, PROJECTION_STREAM, state.step)
                estimate = jacobian_penalty(projections, lambda inputs: forward(params, inputs, noise_key)[0], x,
                                            num_projections=jacobian_projections)
                terms.append(jnp.asarray(jacobian) * estimate)
            penalty = sum((t.astype(task.dtype) for t in terms), jnp.zeros((), task.dtype))
            return task + penalty, (task, penalty, outputs, model_state)

        grad_fn = jax.value_and_grad(objective, has_aux=True)
        (total, (task, penalty, outputs, model_state)), grads = grad_fn(state.params)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)

        extra = {}
        if takes_extra_args and (accepted is None or "value" in accepted):
            extra["value"] = total if value is None else jnp.asarray(value)
        if takes_extra_args and (accepted is None or "grad_fn" in accepted):
            extra["grad_fn"] = lambda params, i: jax.grad(lambda p: objective(p)[0])(params)

        def apply_update(grads, opt_state, params):
            # optax is not clean under strict dtype promotion (adam's `decay**count`, reduce_on_plateau's
            # `count * avg_value` mix Python floats / int32 counts with float32); our loss code above stays
            # strict.
            with jax.numpy_dtype_promotion("standard"):
                updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
            return optax.apply_updates(params, updates), opt_state

        def keep(grads, opt_state, params):
            return params, opt_state

        # A cond, not a jnp.where select of new and old values: a select keeps the old params and optimizer
        # state alive beside the new ones, so XLA copies every donated buffer first (+15-20% on the MLP step
        # of benchmarks/train_step.py); the cond updates them in place. Under vmap it becomes that select.
        params, opt_state = jax.lax.cond(finite, apply_update, keep, grads, state.opt_state, state.params)

        skipped = (~finite).astype(jnp.int32)
        new_state = state.replace(
            params=params,
            opt_state=opt_state,
            model_state=_select(finite, model_state, state.model_state),
            step=state.step + 1,
            skipped=state.skipped + skipped,
            averages=update_averages(state.averages, params, state.step, finite),
        )
        metrics = {
            "loss": task.astype(jnp.float32),
            "penalty": penalty.astype(jnp.float32),
            "grad_norm": grad_norm.astype(jnp.float32),
            "skipped": skipped,
        }
        if _is_classification(outputs, y):
            metrics["accuracy"] = accuracy(outputs, y, weights=weights)
        return new_state, metrics

    if not jit:
        return train_step
    compiled = jax.jit(train_step, donate_argnums=(0,) if donate else ())

    @functools.wraps(train_step)
    def jitted_train_step(state, x, y, weights=None, value=None):
        # Always pass all five arguments: jit keys its cache on the positional arity, so step(s, x, y) and a
        # call with explicit Nones (as in the scanned epoch) would otherwise compile twice.
        return compiled(state, x, y, weights, value)

    return jitted_train_step


def make_eval_step(apply_fn: ApplyFn, loss_fn: LossFn, *, average: str | None = None,
                   jit: bool = True) -> Callable[..., dict[str, jax.Array]]:
    """Build ``evaluate(state, x, y, weights=None) -> {"loss", "accuracy"}`` in evaluation mode (no noise).

    The model runs with ``key=None, training=False`` on the whole ``x`` at once (one batch; split very large
    sets yourself). ``loss`` is the (weighted) mean task loss, without penalties; ``accuracy`` is present only
    for integer labels and ``(..., classes)`` outputs. Nothing is donated.

    Args:
      apply_fn: the model (see the module docstring).
      loss_fn: ``loss_fn(outputs, y) -> per-example loss``.
      average: evaluate ``state.params`` (None, default) or the state's ``"ema"`` / ``"swa"`` average
        (:mod:`jaxreg.averaging`; for batch-norm statistics of SWA weights see :func:`jaxreg.update_bn`).
      jit: return the ``jax.jit``-compiled function (default) or the plain one (to ``vmap``).

    Returns:
      ``evaluate(state, x, y, weights=None)`` returning a dict of float32 scalars.

    Raises:
      TypeError: if ``apply_fn`` or ``loss_fn`` is not callable, or ``jit`` is not a bool.
      ValueError: ``average`` not None/"ema"/"swa"; at the call, a state without that average. When traced,
        if ``outputs`` and ``y`` differ in their leading (batch) dimension, or ``weights`` is not ``(batch,)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> import jaxreg as jr
      >>> def apply_fn(params, model_state, x, *, key, training):
      ...     return x @ params["w"], model_state
      >>> state = jr.create_train_state({"w": jnp.eye(2)}, optax.sgd(0.1), jax.random.key(0))
      >>> evaluate = jr.make_eval_step(apply_fn, optax.softmax_cross_entropy_with_integer_labels)
      >>> m = evaluate(state, jnp.array([[2.0, 0.0], [0.0, 2.0]]), jnp.array([0, 0]))
      >>> print(m["accuracy"], m["loss"])
      0.5 1.127
    """
    check_callable("apply_fn", apply_fn)
    check_callable("loss_fn", loss_fn)
    check_bool("jit", jit, "make_eval_step")
    if average is not None:
        check_choice("average", average, ("ema", "swa"))

    def eval_step(state: TrainState, x: Any, y: Any, weights: ArrayLike | None = None) -> dict[str, jax.Array]:
        params = averaged_params(state, average)
        outputs, _ = apply_fn(params, state.model_state, x, key=None, training=False)
        _check_batch(outputs, y, weights)
        metrics = {"loss": _weighted_mean(loss_fn(outputs, y), weights).astype(jnp.float32)}
        if _is_classification(outputs, y):
            metrics["accuracy"] = accuracy(outputs, y, weights=weights)
        return metrics

    if not jit:
        return eval_step
    compiled = jax.jit(eval_step)

    @functools.wraps(eval_step)
    def jitted_eval_step(state, x, y, weights=None):
        return compiled(state, x, y, weights)  # fixed arity: one cache entry (see make_train_step)

    return jitted_eval_step
