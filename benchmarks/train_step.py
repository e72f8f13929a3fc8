"""One training step: the jaxreg engine against a plain Flax+Optax step, PyTorch eager and Keras ``fit``.

The workload is the classic dropout MLP: 784-512-512-10, ReLU, dropout 0.5 after each hidden layer, L2 on
the kernels (``c * sum(w**2)``, c = 1e-4), Adam(1e-3), batch 128, float32, softmax cross-entropy:

* **jaxreg**: :func:`jaxreg.make_train_step` over ``jr.linen_apply(model)`` where the model's dropout is
  ``jaxreg.flax.linen.Dropout`` (``jr.dropout`` inside the model) and ``penalties=[(jr.l2, c,
  jr.kernel_mask)]``: the engine as a user calls it, with its metrics (loss, penalty, grad_norm,
  accuracy), its non-finite guard and its donated state.
* **flax**: the step written the usual way, ``flax.training.train_state.TrainState``, ``nn.Dropout``,
  the L2 term in the loss, ``jax.jit(donate_argnums=0)`` of ``value_and_grad`` + ``apply_gradients``, the
  dropout key ``fold_in(key, step)`` as in the flax examples. Same parameters, same masks (jaxreg's
  default ``mask_impl="prng"`` draws flax's masks bit for bit), so both compute the same loss and the same
  update (``tests/test_benchmarks.py`` checks it): the comparison is of equal work.
* **torch**: the same network in PyTorch eager (``torch.set_num_threads(2)``), Adam with a kernel-only
  ``weight_decay=2c`` (the gradient of ``c * sum(w**2)``); optional (``pip install .[bench]``). OpenMP's
  wait policy is set to ``PASSIVE`` before torch is first imported (see :func:`torch_mlp`).
* **keras**: ``keras.Sequential`` on the JAX backend with ``kernel_regularizer=L2(c)``; per-step time of a
  ``fit`` over ``KERAS_BATCHES`` batches (default ``steps_per_execution``), interleaved with the jaxreg
  engine doing the same number of steps in a Python loop. Optional.

And the fraction of the machine's GEMM throughput the step reaches: step FLOPs ``3 * 2 * batch * (784*512
+ 512*512 + 512*10)`` (forward + two backward matmuls per layer) over the step time, divided by the FLOP
rate of one jitted 2048^3 float32 matmul measured in the same run (interleaved with the steps), for the
engine, the flax step and, informational, the engine with ``jr.dropout(mask_impl="hash")`` (other masks,
cheaper to draw). Last, the ``RegularizedCNN`` step on 32x32x3 images against the same network in plain
flax (informational).

Run: ``python -m benchmarks.train_step [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved
from jaxreg.flax import linen as jrl

BENCH = "train_step"
SIZES = (784, 512, 512, 10)
BATCH = 128
DROPOUT = 0.5
L2 = 1e-4
LR = 1e-3
GEMM_N = 2048
GEMM_TARGET = 0.75
TORCH_TARGET = 1.8
KERAS_TARGET = 1.0
KERAS_BATCHES = 50
TORCH_THREADS = 2
_TORCH_IMPORTED_EARLY = False  # torch imported (OpenMP configured) before torch_mlp could set the wait policy


# ----------------------------------------------------------------------------------------------------------
# The MLP, its data and the two JAX steps (also used by epoch.py, penalties.py and the tests)


class MLP(nn.Module):
    """``[Dense -> ReLU -> dropout] * hidden -> Dense``; ``dropout`` is the linen dropout layer class."""

    sizes: tuple[int, ...] = SIZES
    rate: float = DROPOUT
    dropout: type = nn.Dropout

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for width in self.sizes[1:-1]:
            x = nn.relu(nn.Dense(width)(x))
            x = self.dropout(self.rate, deterministic=not train)(x)
        return nn.Dense(self.sizes[-1])(x)


def mlp_flops(batch: int, sizes: tuple[int, ...] = SIZES) -> int:
    """Matmul FLOPs of one training step: ``3 * 2 * batch * sum(fan_in * fan_out)`` (fwd + 2 bwd GEMMs)."""
    return 3 * 2 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def mlp_data(batch: int, sizes: tuple[int, ...] = SIZES, *, num_batches: int = 1, seed: int = 0):
    """``(x, y)`` on the device: float32 ``(num_batches * batch, sizes[0])`` standard normals, int32 labels."""
    rng = np.random.default_rng(seed)  # numpy: no XLA compilations for the draws
    n = num_batches * batch
    x = rng.standard_normal((n, sizes[0]), np.float32)
    y = rng.integers(0, sizes[-1], n, np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def mlp_params(sizes: tuple[int, ...] = SIZES, seed: int = 0) -> dict:
    """The shared initial parameters (flax's default Dense init); both models have the same tree."""
    init = jax.jit(functools.partial(MLP(sizes).init, train=False))
    return init(jax.random.key(seed), jnp.zeros((1, sizes[0]), jnp.float32))["params"]


def default_optimizer(learning_rate: float = LR) -> optax.GradientTransformation:
    """The optimizer of every JAX step here: ``optax.adam``."""
    return optax.adam(learning_rate)


def jaxreg_mlp_step(
    sizes: tuple[int, ...] = SIZES,
    *,
    optimizer: optax.GradientTransformation | None = None,
    penalties: tuple = ((jr.l2, L2, jr.kernel_mask),),
    mask_impl: str = "prng",
    jit: bool = True,
) -> tuple[Callable, optax.GradientTransformation]:
    """``(step, optimizer)``: the jaxreg engine's step for the MLP, dropout by ``jr.dropout`` in the model."""
    optimizer = default_optimizer() if optimizer is None else optimizer
    dropout = functools.partial(jrl.Dropout, mask_impl=mask_impl)
    model = MLP(sizes, dropout=dropout)
    step = jr.make_train_step(
        jr.linen_apply(model), optax.softmax_cross_entropy_with_integer_labels, optimizer,
        penalties=list(penalties), jit=jit,
    )
    return step, optimizer


def jaxreg_state(params: dict, optimizer: optax.GradientTransformation, seed: int = 1) -> jr.TrainState:
    return jr.create_train_state(params, optimizer, jax.random.key(seed))


def flax_mlp_step(sizes: tuple[int, ...] = SIZES, *, l2: float = L2) -> Callable:
    """The reference: ``step(state, x, y, key) -> (state, loss)``, a plain Flax + Optax step.

    ``loss`` is the total (cross-entropy + L2) loss. The dropout key is ``fold_in(key, state.step)``.
    """
    model = MLP(sizes)

    def loss_fn(params, x, y, key):
        logits = model.apply({"params": params}, x, train=True, rngs={"dropout": key})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        kernels = [layer["kernel"] for layer in params.values()]
        return loss + l2 * sum(jnp.sum(jnp.square(k)) for k in kernels)

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, x, y, key):
        # optax 0.2.8's adam is not clean under strict dtype promotion (the test suite's setting); this
        # context only affects tracing.
        with jax.numpy_dtype_promotion("standard"):
            loss, grads = jax.value_and_grad(loss_fn)(state.params, x, y, jax.random.fold_in(key, state.step))
            return state.apply_gradients(grads=grads), loss

    return step


def flax_state(params: dict, optimizer: optax.GradientTransformation) -> train_state.TrainState:
    params = jax.tree.map(lambda a: jnp.array(a, copy=True), params)  # donated: fresh buffers
    return train_state.TrainState.create(apply_fn=None, params=params, tx=optimizer)


class Stepper:
    """Threads a donated state through ``count`` back-to-back calls of a step per call of the object.

    ``Stepper(step, state, *args, count=n)()`` runs ``state, metrics = step(state, *args)`` ``n`` times (JAX
    dispatches them asynchronously; the timer blocks on the last metrics) and returns the last metrics.
    """

    def __init__(self, step: Callable, state: Any, *args: Any, count: int = 1):
        self.step, self.state, self.args, self.count = step, state, args, count

    def __call__(self) -> Any:
        metrics = None
        for _ in range(self.count):
            self.state, metrics = self.step(self.state, *self.args)
        return metrics


# ----------------------------------------------------------------------------------------------------------
# Optional baselines


def torch_mlp(sizes: tuple[int, ...] = SIZES, *, l2: float = L2, threads: int = TORCH_THREADS):
    """``(model, step)`` for PyTorch eager, or a string saying why torch is unavailable.

    ``step(x, y)`` takes torch tensors (float32 inputs, int64 labels) and returns the loss tensor. Before the
    first ``import torch`` this sets ``OMP_WAIT_POLICY=PASSIVE`` (unless already set): with OpenMP's active
    spin-waiting, torch's two threads spin against JAX's own thread pool when the two are interleaved,
    and on a loaded machine a step took 880 ms instead of 51 ms (benchmarks/NOTES.md).
    """
    global _TORCH_IMPORTED_EARLY
    if "torch" in sys.modules:
        _TORCH_IMPORTED_EARLY = "OMP_WAIT_POLICY" not in os.environ
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        torch = importlib.import_module("torch")
    except Exception as err:  # optional baseline
        return f"torch not importable ({type(err).__name__}); pip install .[bench]"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(DROPOUT)]
    model = torch.nn.Sequential(*layers)
    kernels = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    # Adam's (coupled) weight_decay adds wd * w to the gradient: the gradient of (wd / 2) * sum(w**2).
    opt = torch.optim.Adam([{"params": kernels, "weight_decay": 2 * l2}, {"params": biases, "weight_decay": 0.0}],
                           lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step


def torch_tensors(x: jax.Array, y: jax.Array):
    import torch

    return torch.from_numpy(np.array(x)), torch.from_numpy(np.array(y).astype(np.int64))


def keras_mlp(sizes: tuple[int, ...] = SIZES, *, l2: float = L2):
    """A compiled ``keras.Sequential`` twin of the MLP on the JAX backend, or a string saying why not."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        keras = importlib.import_module("keras")
    except Exception as err:  # optional baseline
        return f"keras not importable ({type(err).__name__})"
    if keras.backend.backend() != "jax":
        return f"keras backend is {keras.backend.backend()!r}, not 'jax' (set KERAS_BACKEND=jax before importing)"
    keras.utils.set_random_seed(0)
    layers: list[Any] = [keras.Input((sizes[0],))]
    for width in sizes[1:-1]:
        layers += [keras.layers.Dense(width, activation="relu", kernel_regularizer=keras.regularizers.L2(l2)),
                   keras.layers.Dropout(DROPOUT)]
    layers.append(keras.layers.Dense(sizes[-1], kernel_regularizer=keras.regularizers.L2(l2)))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


# ----------------------------------------------------------------------------------------------------------
# The CNN


class FlaxCNN(nn.Module):
    """``RegularizedCNN``'s network in plain flax: ``nn.BatchNorm``, ``nn.Dropout`` (spatial: broadcast)."""

    num_outputs: int = 10
    features: tuple[int, int] = (32, 64)
    dense_size: int = 128
    spatial_rate: float = 0.1
    rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def norm_relu(h):
            return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h))

        x = norm_relu(nn.Conv(self.features[0], (3, 3), use_bias=False)(x))
        x = nn.Dropout(self.spatial_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
        x = norm_relu(nn.Conv(self.features[1], (3, 3), use_bias=False)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = jnp.reshape(x, (x.shape[0], -1))
        x = norm_relu(nn.Dense(self.dense_size, use_bias=False)(x))
        x = nn.Dropout(self.rate, deterministic=not train)(x)
        return nn.Dense(self.num_outputs)(x)


class _BNTrainState(train_state.TrainState):
    batch_stats: Any = None


def cnn_models(features: tuple[int, int] = (32, 64), dense_size: int = 128):
    """``(ours, reference)``: ``RegularizedCNN`` (jaxreg's dropout and batch norm) and :class:`FlaxCNN`."""
    from jaxreg.experiments.models import RegularizedCNN

    return (RegularizedCNN(num_outputs=10, features=features, dense_size=dense_size),
            FlaxCNN(features=features, dense_size=dense_size))


def cnn_setup(batch: int, *, image: int = 32, features: tuple[int, int] = (32, 64), dense_size: int = 128):
    """Both CNN steps and states on one batch: ``dict(jaxreg=(step, state), flax=(step, state, key), x, y)``.

    Both start from the same variables (the two modules have one layout: ``Conv_i``, ``BatchNorm_i``,
    ``Dense_i`` with flax's names); their dropout masks differ (different rng paths), so their losses do.
    """
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (batch, image, image, 3), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, 10, jnp.int32)
    ours, ref = cnn_models(features, dense_size)
    variables = jax.jit(functools.partial(ours.init, train=False))(jax.random.key(0), x[:1])
    tx = default_optimizer()
    step = jr.make_train_step(jr.linen_apply(ours), optax.softmax_cross_entropy_with_integer_labels, tx,
                              penalties=[(jr.l2, L2, jr.kernel_mask)])
    state = jr.create_train_state(variables["params"], tx, jax.random.key(1),
                                  model_state={"batch_stats": variables["batch_stats"]})

    def loss_fn(params, batch_stats, x, y, key):
        logits, updates = ref.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                    rngs={"dropout": key}, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        kernels = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim >= 2]
        return loss + L2 * sum(jnp.sum(jnp.square(k)) for k in kernels), updates["batch_stats"]

    @functools.partial(jax.jit, donate_argnums=0)
    def flax_step(state, x, y, key):
        with jax.numpy_dtype_promotion("standard"):
            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state.params, state.batch_stats, x, y, jax.random.fold_in(key, state.step))
            return state.apply_gradients(grads=grads, batch_stats=stats), loss

    fresh = jax.tree.map(lambda a: jnp.array(a, copy=True), variables)
    fstate = _BNTrainState.create(apply_fn=None, params=fresh["params"], tx=tx, batch_stats=fresh["batch_stats"])
    return {"jaxreg": (step, state), "flax": (flax_step, fstate, jax.random.key(1)), "x": x, "y": y}


# ----------------------------------------------------------------------------------------------------------
# Measurements


def gemm_fn(n: int = GEMM_N) -> tuple[Callable[[], jax.Array], int]:
    """``(f, flops)``: a zero-argument jitted ``n^3`` float32 matmul and its FLOPs ``2 n^3``."""
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    return functools.partial(matmul, a, b), 2 * n**3


def _rate_note(step_s: float, batch: int) -> str:
    return f"{1 / step_s:,.0f} steps/s, {batch / step_s:,.0f} examples/s"


def _mlp_rows(quick: bool) -> list[Result]:
    repeats, count = (5, 3) if quick else (30, 10)
    x, y = mlp_data(BATCH)
    params = mlp_params()
    step, tx = jaxreg_mlp_step()
    gemm, gemm_flops = gemm_fn()
    hash_step, _ = jaxreg_mlp_step(mask_impl="hash")
    fns: dict[str, Callable] = {
        "jaxreg": Stepper(step, jaxreg_state(params, tx), x, y, count=count),
        "hash": Stepper(hash_step, jaxreg_state(params, tx), x, y, count=count),
        "flax": Stepper(flax_mlp_step(), flax_state(params, tx), x, y, jax.random.key(1), count=count),
        "gemm": gemm,
    }
    times = time_interleaved(fns, repeats=repeats, warmup=2)
    torch_setup = torch_mlp()
    if not isinstance(torch_setup, str):
        # A separate pair: torch's OpenMP threads may spin after each call (see torch_mlp) and slow down
        # whatever runs next, which must not touch the flax and GEMM comparisons.
        x_t, y_t = torch_tensors(x, y)
        torch_step = torch_setup[1]

        def torch_steps():
            for _ in range(count):
                loss = torch_step(x_t, y_t)
            return loss

        pair = time_interleaved({"jaxreg": fns["jaxreg"], "torch": torch_steps}, repeats=repeats, warmup=2)
        times["torch"], times["jaxreg_vs_torch"] = pair["torch"], pair["jaxreg"]
    for name in ("jaxreg", "hash", "flax", "torch", "jaxreg_vs_torch"):
        if name in times:
            times[name] /= count
    gemm_rate = gemm_flops / times["gemm"]
    flops = mlp_flops(BATCH)
    at_gemm_rate = flops / gemm_rate  # seconds the step's FLOPs take at the GEMM's rate
    case = f"MLP 784-512-512-10 b{BATCH} f32"
    rows = [
        Result(BENCH, case, "jaxreg make_train_step", "flax+optax step", times["jaxreg"], times["flax"],
               times["jaxreg"] / times["flax"],
               note=f"same masks, loss and update; jaxreg {_rate_note(times['jaxreg'], BATCH)}; "
                    f"flax {_rate_note(times['flax'], BATCH)}"),
        Result(BENCH, case + " GEMM fraction", "jaxreg make_train_step", f"{GEMM_N}^3 f32 matmul rate",
               times["jaxreg"], at_gemm_rate, at_gemm_rate / times["jaxreg"], target=GEMM_TARGET,
               higher_is_better=True,
               note=f"GEMM {gemm_rate / 1e9:.1f} GFLOP/s; step {flops / times['jaxreg'] / 1e9:.1f} GFLOP/s "
                    f"({flops / 1e6:.0f} MFLOP/step, nominal 3 GEMMs per layer)"),
        Result(BENCH, case + " GEMM fraction", "flax+optax step", f"{GEMM_N}^3 f32 matmul rate",
               times["flax"], at_gemm_rate, at_gemm_rate / times["flax"], higher_is_better=True,
               note=f"step {flops / times['flax'] / 1e9:.1f} GFLOP/s"),
        Result(BENCH, case + " GEMM fraction", "jaxreg step, jr.dropout(mask_impl='hash')",
               f"{GEMM_N}^3 f32 matmul rate", times["hash"], at_gemm_rate, at_gemm_rate / times["hash"],
               higher_is_better=True,
               note=f"other masks than flax's (a seeded hash); {times['hash'] / times['flax']:.3f}x the flax step"),
    ]
    if "torch" in times:
        policy = os.environ.get("OMP_WAIT_POLICY", "unset: OpenMP's active spin-wait")
        if _TORCH_IMPORTED_EARLY:
            policy += " (torch was imported before this module could set it)"
        ours_s = times["jaxreg_vs_torch"]
        rows.append(Result(BENCH, case, "jaxreg make_train_step", f"PyTorch eager ({TORCH_THREADS} threads)",
                           ours_s, times["torch"], times["torch"] / ours_s, target=TORCH_TARGET,
                           higher_is_better=True,
                           note=f"speedup; torch {_rate_note(times['torch'], BATCH)}, OMP_WAIT_POLICY={policy}"))
    else:
        rows.append(Result(BENCH, case, "jaxreg make_train_step", "PyTorch eager", times["jaxreg"], float("nan"),
                           float("nan"), target=TORCH_TARGET, higher_is_better=True,
                           note="skipped: " + torch_setup))
    rows.append(_keras_row(quick, params, case))
    return rows


def _keras_row(quick: bool, params: dict, case: str) -> Result:
    batches = 10 if quick else KERAS_BATCHES
    model = keras_mlp()
    if isinstance(model, str):
        return Result(BENCH, case, "jaxreg step loop", "Keras fit", float("nan"), float("nan"), float("nan"),
                      target=KERAS_TARGET, higher_is_better=True, note="skipped: " + model)
    step, tx = jaxreg_mlp_step()
    x, y = mlp_data(BATCH, num_batches=batches, seed=2)
    x_np, y_np = np.asarray(x), np.asarray(y)
    ours = Stepper(step, jaxreg_state(params, tx))

    def loop():
        # The same host (numpy) batches Keras slices, so both sides pay the host-to-device copies.
        for i in range(batches):
            ours.args = (x_np[i * BATCH:(i + 1) * BATCH], y_np[i * BATCH:(i + 1) * BATCH])
            metrics = ours()
        return metrics

    def keras_fit():
        model.fit(x_np, y_np, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)

    times = time_interleaved({"ours": loop, "keras": keras_fit}, repeats=5 if quick else 15, warmup=2)
    ours_s, keras_s = times["ours"] / batches, times["keras"] / batches
    return Result(BENCH, case, f"jaxreg step, Python loop of {batches}", f"Keras 3 fit ({batches} batches, jax)",
                  ours_s, keras_s, keras_s / ours_s, target=KERAS_TARGET, higher_is_better=True,
                  note=f"speedup per step; keras {_rate_note(keras_s, BATCH)}; numpy batches on both sides")


def _cnn_rows(quick: bool) -> list[Result]:
    batch = 32 if quick else 64
    setup = cnn_setup(batch)
    step, state = setup["jaxreg"]
    fstep, fstate, key = setup["flax"]
    x, y = setup["x"], setup["y"]
    times = time_interleaved({"ours": Stepper(step, state, x, y), "ref": Stepper(fstep, fstate, x, y, key)},
                             repeats=5 if quick else 10, warmup=2)
    return [Result(BENCH, f"RegularizedCNN 32x32x3 b{batch} f32", "jaxreg make_train_step",
                   "flax+optax step (nn.BatchNorm, nn.Dropout)", times["ours"], times["ref"],
                   times["ours"] / times["ref"], note=f"jaxreg {_rate_note(times['ours'], batch)}")]


def run(quick: bool) -> list[Result]:
    """The MLP rows (flax, GEMM fraction, torch, keras) and the CNN row."""
    return _mlp_rows(quick) + _cnn_rows(quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller CNN batch")
    from benchmarks.__main__ import format_table

    print(format_table(run(parser.parse_args().quick)))
