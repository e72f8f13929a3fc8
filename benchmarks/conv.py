"""Convolutions on CPU: :func:`jaxreg.conv` against XLA's convolution, the GEMM floor and PyTorch eager.

* **layer**: one convolution's forward and backward (output, input gradient and kernel gradient, all
  returned so that none is pruned) at the experiments' shapes: the CNN's second layer, 64x32x32x32 -> 64
  channels, 3x3, SAME, and its first, 64x32x32x3 -> 32. :func:`jaxreg.conv` against
  ``lax.conv_general_dilated`` (XLA's convolution and XLA's autodiff of it), and against the GEMM floor:
  the layer's ``3 * 2 * N*H*W * 9*C_in * C_out`` FLOPs at the rate of a 2048^3 float32 matmul timed in the
  same run, interleaved.
* **step**: the ``RegularizedCNN`` training step of the experiments (32x32x3 images, batch 64, the jaxreg
  engine with L2 on the kernels and Adam; and at ``jaxreg experiment cnn``'s default, 8x8x1 digits, batch 32)
  as it is (:class:`jaxreg.flax.conv.Conv` and a reshape max
  pool) against the same network and step with flax's layers (``nn.Conv``, ``nn.max_pool``): same
  variables, same dropout masks, the same loss (``tests/test_benchmarks.py`` checks it).
* **torch**: the same step against PyTorch eager (``torch.set_num_threads(2)``): the same architecture in
  NCHW, Adam with a kernel-only coupled ``weight_decay = 2 * L2`` (the gradient of ``L2 * sum(w**2)``),
  batch-norm momentum 0.1 (flax's 0.9), Dropout2d for the spatial dropout. Optional: without torch the row
  says so. OpenMP's wait policy is set to ``PASSIVE`` before torch is first imported (see
  ``benchmarks/train_step.py``).

On a GPU or TPU backend :func:`jaxreg.conv` is XLA's convolution itself, and the rows measure that it costs
nothing (ratio to XLA/flax near 1). Run: ``python -m benchmarks.conv [--quick]``.
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

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved
from benchmarks.train_step import L2, LR, TORCH_THREADS, Stepper, default_optimizer, gemm_fn
from jaxreg.experiments.models import RegularizedCNN

BENCH = "conv"
BATCH, IMAGE = 64, 32
FEATURES, DENSE = (32, 64), 128
TORCH_TARGET = 1.5  # the bar: the jaxreg step at least 1.5x faster than PyTorch eager
DEVICE_TARGET = 1.02  # off CPU, jr.conv is XLA's convolution: no slowdown
_NHWC = ("NHWC", "HWIO", "NHWC")
# XLA:CPU sends dots and convolutions to YNNPACK by default; this keeps its dots and gives the convolutions to
# Eigen, whose forward convolution of the second layer runs 2x faster here (benchmarks/NOTES.md, section 11).
EIGEN_CONVOLUTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


class FlaxLayersCNN(RegularizedCNN):
    """``RegularizedCNN`` with flax's ``nn.Conv`` and ``nn.max_pool``: the same variables and masks."""

    conv_layer = nn.Conv
    max_pool = staticmethod(lambda x, window: nn.max_pool(x, (window, window), strides=(window, window)))


# ----------------------------------------------------------------------------------------------------------
# One layer


def layer_fns(shape: tuple[int, int, int, int], out_features: int, kernel_size: int = 3):
    """``(ours, xla, flops)``: zero-argument jitted forward+backward of one SAME convolution, and its FLOPs."""
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape, jnp.float32)
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, shape[-1], out_features), jnp.float32) * 0.1
    g = jax.random.normal(kg, (*shape[:-1], out_features), jnp.float32)

    def xla_conv(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=_NHWC)

    def fwd_bwd(conv_fn):
        def run(x, k, g):
            y, vjp = jax.vjp(conv_fn, x, k)
            return (y, *vjp(g))

        return functools.partial(jax.jit(run), x, kernel, g)

    flops = 3 * 2 * int(np.prod(shape[:-1])) * kernel_size**2 * shape[-1] * out_features
    return fwd_bwd(lambda x, k: jr.conv(x, k, padding="SAME")), fwd_bwd(xla_conv), flops


def _layer_rows(quick: bool, gemm: Callable, gemm_flops: int) -> list[Result]:
    repeats = 5 if quick else 20
    batch = 16 if quick else BATCH
    cases = {"second": ((batch, IMAGE, IMAGE, FEATURES[0]), FEATURES[1]),
             "first": ((batch, IMAGE, IMAGE, 3), FEATURES[0])}
    fns: dict[str, Callable] = {"gemm": gemm}
    flops = {}
    for name, (shape, out) in cases.items():
        fns[name + "_ours"], fns[name + "_xla"], flops[name] = layer_fns(shape, out)
    times = time_interleaved(fns, repeats=repeats, warmup=2)
    rate = gemm_flops / times["gemm"]
    rows = []
    backend = jax.default_backend()
    for name, (shape, out) in cases.items():
        case = f"conv {'x'.join(map(str, shape))}->{out} 3x3 SAME f32 fwd+bwd"
        ours, ref = times[name + "_ours"], times[name + "_xla"]
        rows.append(Result(BENCH, case, "jr.conv", "lax.conv_general_dilated + autodiff", ours, ref, ours / ref,
                           target=None if backend == "cpu" else DEVICE_TARGET,
                           note=f"{backend}; {flops[name] / ours / 1e9:.1f} GFLOP/s vs XLA "
                                f"{flops[name] / ref / 1e9:.1f}"))
        floor = flops[name] / rate
        rows.append(Result(BENCH, case + " GEMM fraction", "jr.conv", "2048^3 f32 matmul rate", ours, floor,
                           floor / ours, higher_is_better=True,
                           note=f"GEMM {rate / 1e9:.1f} GFLOP/s; XLA's conv reaches {floor / ref:.2f} of it; "
                                f"{flops[name] / 1e9:.2f} GFLOP per call"))
    return rows


# ----------------------------------------------------------------------------------------------------------
# The CNN step


def cnn_steps(batch: int, *, image: int = IMAGE, channels: int = 3, features: tuple[int, int] = FEATURES,
              dense_size: int = DENSE):
    """``dict(jaxreg=(step, state), flax_layers=(step, state), x, y, variables)`` on one batch.

    Both are :func:`jaxreg.make_train_step` over ``linen_apply`` with L2 on the kernels and Adam, from the
    same variables and key: they differ only in the convolution and max-pool implementations.
    """
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (batch, image, image, channels), jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, 10, jnp.int32)
    out: dict[str, Any] = {"x": x, "y": y}
    variables = None
    for name, cls in (("jaxreg", RegularizedCNN), ("flax_layers", FlaxLayersCNN)):
        model = cls(num_outputs=10, features=features, dense_size=dense_size)
        if variables is None:
            variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x[:1])
        tx = default_optimizer()
        step = jr.make_train_step(jr.linen_apply(model), optax.softmax_cross_entropy_with_integer_labels, tx,
                                  penalties=[(jr.l2, L2, jr.kernel_mask)])
        fresh = jax.tree.map(lambda a: jnp.array(a, copy=True), variables)  # donated: own buffers
        state = jr.create_train_state(fresh["params"], tx, jax.random.key(1),
                                      model_state={"batch_stats": fresh["batch_stats"]})
        out[name] = (step, state)
    out["variables"] = variables
    return out


def eigen_convolution_step(batch: int, *, image: int = IMAGE, features: tuple[int, int] = FEATURES,
                           dense_size: int = DENSE):
    """``(step, state, x, y)``: the ``jaxreg`` step of :func:`cnn_steps` compiled with ``EIGEN_CONVOLUTIONS``.

    How a user gets it: ``make_train_step(..., jit=False)`` jitted with ``jax.jit(step, donate_argnums=0,
    compiler_options=EIGEN_CONVOLUTIONS)``. None off the CPU backend (the option is XLA:CPU's).
    """
    if jax.default_backend() != "cpu":
        return None
    setup = cnn_steps(batch, image=image, features=features, dense_size=dense_size)
    model = RegularizedCNN(num_outputs=10, features=features, dense_size=dense_size)
    tx = default_optimizer()
    plain = jr.make_train_step(jr.linen_apply(model), optax.softmax_cross_entropy_with_integer_labels, tx,
                               penalties=[(jr.l2, L2, jr.kernel_mask)], jit=False)
    step = jax.jit(lambda state, x, y: plain(state, x, y), donate_argnums=0, compiler_options=EIGEN_CONVOLUTIONS)
    fresh = jax.tree.map(lambda a: jnp.array(a, copy=True), setup["variables"])
    state = jr.create_train_state(fresh["params"], tx, jax.random.key(1),
                                  model_state={"batch_stats": fresh["batch_stats"]})
    return step, state, setup["x"], setup["y"]


def torch_cnn(*, features: tuple[int, int] = FEATURES, dense_size: int = DENSE, image: int = IMAGE,
              l2: float = L2, threads: int = TORCH_THREADS):
    """``(model, step)``: ``RegularizedCNN``'s architecture in PyTorch eager, or a string saying why not.

    ``step(x, y)`` takes NCHW float32 images and int64 labels and returns the loss tensor.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        torch = importlib.import_module("torch")
    except Exception as err:  # optional baseline
        return f"torch not installed or not importable ({type(err).__name__}); pip install .[bench]"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tnn = torch.nn
    c1, c2 = features
    model = tnn.Sequential(
        tnn.Conv2d(3, c1, 3, padding=1, bias=False), tnn.BatchNorm2d(c1, momentum=0.1, eps=1e-5), tnn.ReLU(),
        tnn.Dropout2d(0.1),
        tnn.Conv2d(c1, c2, 3, padding=1, bias=False), tnn.BatchNorm2d(c2, momentum=0.1, eps=1e-5), tnn.ReLU(),
        tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(c2 * (image // 2) ** 2, dense_size, bias=False), tnn.BatchNorm1d(dense_size, momentum=0.1),
        tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(dense_size, 10))
    kernels = [p for name, p in model.named_parameters() if name.endswith("weight") and p.ndim >= 2]
    others = [p for name, p in model.named_parameters() if not (name.endswith("weight") and p.ndim >= 2)]
    opt = torch.optim.Adam([{"params": kernels, "weight_decay": 2 * l2}, {"params": others, "weight_decay": 0.0}],
                           lr=LR)
    loss_fn = tnn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, step


def _cnn_rows(quick: bool) -> list[Result]:
    batch = 16 if quick else BATCH
    repeats = 3 if quick else 10
    setup = cnn_steps(batch)
    x, y = setup["x"], setup["y"]
    ours = Stepper(*setup["jaxreg"], x, y)
    times = time_interleaved({"ours": ours, "flax": Stepper(*setup["flax_layers"], x, y)}, repeats=repeats,
                             warmup=2)
    case = f"RegularizedCNN {IMAGE}x{IMAGE}x3 b{batch} f32 step"
    backend = jax.default_backend()
    rows = [Result(BENCH, case, "jaxreg step (jrl Conv, reshape max pool)", "same step, nn.Conv + nn.max_pool",
                   times["ours"], times["flax"], times["ours"] / times["flax"],
                   target=None if backend == "cpu" else DEVICE_TARGET,
                   note=f"{backend}; same variables, masks and loss; {batch / times['ours']:,.0f} examples/s")]
    # The experiment's default (`jaxreg experiment cnn`: digits, 8x8x1, batch 32): small, dispatch-bound steps.
    small = cnn_steps(32, image=8, channels=1)
    count = 3 if quick else 10
    pair = time_interleaved({"ours": Stepper(*small["jaxreg"], small["x"], small["y"], count=count),
                             "flax": Stepper(*small["flax_layers"], small["x"], small["y"], count=count)},
                            repeats=repeats, warmup=2)
    rows.append(Result(BENCH, "RegularizedCNN 8x8x1 b32 f32 step (experiment cnn's default)",
                       "jaxreg step (jrl Conv, reshape max pool)", "same step, nn.Conv + nn.max_pool",
                       pair["ours"] / count, pair["flax"] / count, pair["ours"] / pair["flax"],
                       note=f"{backend}; digits-sized: the convolutions are a small part of this step"))
    setup_t = torch_cnn()
    if isinstance(setup_t, str):
        rows.append(Result(BENCH, case, "jaxreg step", "PyTorch eager", times["ours"], float("nan"), float("nan"),
                           target=TORCH_TARGET, higher_is_better=True, note="skipped: " + setup_t))
        return rows
    import torch

    torch_step = setup_t[1]
    x_t = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    y_t = torch.from_numpy(np.asarray(y).astype(np.int64))
    # A separate group, as in train_step.py: torch's OpenMP threads must not touch the pair above.
    timed = {"ours": ours, "torch": functools.partial(torch_step, x_t, y_t)}
    eigen = eigen_convolution_step(batch)
    if eigen is not None:
        timed["eigen"] = Stepper(*eigen)
    pair = time_interleaved(timed, repeats=repeats, warmup=2)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    rows.append(Result(BENCH, case, "jaxreg step", f"PyTorch eager ({TORCH_THREADS} threads)", pair["ours"],
                       pair["torch"], pair["torch"] / pair["ours"], target=TORCH_TARGET, higher_is_better=True,
                       note=f"speedup; torch {torch.__version__}, OMP_WAIT_POLICY={policy}; "
                            f"the flax-layers step {times['flax'] / times['ours']:.2f}x ours"))
    if eigen is not None:
        rows.append(Result(BENCH, case, "jaxreg step, convolutions on Eigen (compiler option)",
                           f"PyTorch eager ({TORCH_THREADS} threads)", pair["eigen"], pair["torch"],
                           pair["torch"] / pair["eigen"], target=TORCH_TARGET, higher_is_better=True,
                           note=f"speedup; jax.jit(step, compiler_options={EIGEN_CONVOLUTIONS}); "
                                f"{pair['ours'] / pair['eigen']:.2f}x faster than the default compilation"))
    return rows


def run(quick: bool) -> list[Result]:
    """The layer rows (vs XLA, vs the GEMM floor), the CNN step vs flax's layers, and vs PyTorch."""
    gemm, gemm_flops = gemm_fn()
    return _layer_rows(quick, gemm, gemm_flops) + _cnn_rows(quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, batch 16")
    from benchmarks.__main__ import format_table

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", file=sys.stderr)
    print(format_table(run(parser.parse_args().quick)))
