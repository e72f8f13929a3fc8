"""Per-batch cost of the vision regularizers (issue 12): jaxreg in a jitted function against torchvision on the CPU.

Workload: one 256x32x32x3 batch (CIFAR-sized), the same pixels for both sides.

* **rand_augment, trivial_augment, augmix** (``uint8``, as a data pipeline holds images before normalizing) and
  **random_erasing** (``float32`` in [0, 1], ``probability=0.5``): ``jr.rand_augment`` / ``jr.trivial_augment``
  / ``jr.augmix`` / ``jr.random_erasing`` of the whole NHWC batch in one ``jax.jit`` function, against
  torchvision's v2 transforms (``RandAugment()``, ``TrivialAugmentWide()``, ``AugMix()``,
  ``RandomErasing(p=0.5)``) applied image by image to CHW tensors in a Python loop and stacked, as a
  ``DataLoader`` worker runs them (``torch.set_num_threads(1)``, as in a worker). Target: jaxreg >= 5x faster
  (ratio <= 0.2). The jaxreg side uses every core of the process (XLA's thread pool);
  ``DataLoader(num_workers=k)`` divides the torchvision figure by at most ``k``, so the notes also give the
  ratio against an ideal worker per core.
* **drop_block** (``float32``, ``rate=0.1``, ``block_size=7``): ``jr.drop_block`` against the memory floor,
  one elementwise multiply of the same array (``x * c``; informational: DropBlock also draws the seeds,
  max-pools them and counts the survivors), and against ``torchvision.ops.drop_block2d`` on the NCHW batch
  (a layer of the model, so batched, with a torch thread per core; informational).

torchvision is an optional baseline (``pip install .[bench]``); without it its rows say so in the note. Run:
``python -m benchmarks.augment [--quick]``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxreg as jr
from benchmarks._timing import Result, time_interleaved

BENCH = "augment"
SHAPE = (256, 32, 32, 3)
TARGET = 0.2  # jaxreg >= 5x faster than the per-image torchvision loop
DROP_RATE = 0.1
BLOCK_SIZE = 7
TORCH_THREADS = 1  # a DataLoader worker runs torch with one thread


def images(dtype: str) -> np.ndarray:
    """The benchmark batch: smooth random images (so equalize/autocontrast have work), NHWC ``uint8`` or float32."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0.0, 1.0, (SHAPE[0], 8, 8, SHAPE[3]))
    x = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2) * 0.7 + rng.uniform(0.0, 0.3, SHAPE)
    return np.round(x * 255).astype(np.uint8) if dtype == "uint8" else x.astype(np.float32)


def load_torchvision() -> tuple[Any, Any, str] | str:
    """``(torch, torchvision, note)``, or a string saying why torchvision is unavailable.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` before torch's first import (see benchmarks/train_step.py: spinning
    OpenMP threads slow down the interleaved JAX calls). A torchvision wheel built for another torch variant
    (the CUDA wheel beside a CPU torch) cannot load its compiled extension, and its import then fails while
    registering fake kernels for the extension's ops (``torchvision::nms``); the v2 transforms and
    ``ops.drop_block2d`` are pure torch code, so they are loaded with those registrations skipped, and the
    note says so.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        torch = importlib.import_module("torch")
    except ImportError as err:
        return f"torch not importable ({type(err).__name__}); pip install .[bench]"
    note = ""
    try:
        torchvision = importlib.import_module("torchvision")
    except ImportError as err:
        return f"torchvision not importable ({type(err).__name__}); pip install .[bench]"
    except (RuntimeError, OSError) as err:
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        try:
            torchvision = importlib.import_module("torchvision")
        except Exception as retry:  # noqa: BLE001 - any failure means: no baseline, said in the note
            return f"torchvision not importable ({type(retry).__name__}: {retry})"
        note = (f"torchvision {torchvision.__version__}'s compiled extension did not load ({err}); its "
                "transforms are pure torch and ran without it")
    torch.set_num_threads(TORCH_THREADS)
    torch.manual_seed(0)
    return torch, torchvision, note


def _per_image_loop(torch: Any, transform: Callable[[Any], Any], batch: np.ndarray) -> Callable[[], Any]:
    """``torch.stack([transform(img) for img in batch])`` over CHW tensors, as a worker and its collate do."""
    tensors = [torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) for image in batch]

    def run() -> Any:
        return torch.stack([transform(image) for image in tensors])

    return run


def _jaxreg_fns() -> dict[str, Callable[[jax.Array, jax.Array], jax.Array]]:
    return {
        "rand_augment": jax.jit(lambda k, x: jr.rand_augment(k, x)),
        "trivial_augment": jax.jit(lambda k, x: jr.trivial_augment(k, x)),
        "augmix": jax.jit(lambda k, x: jr.augmix(k, x)),
        "random_erasing": jax.jit(lambda k, x: jr.random_erasing(k, x, probability=0.5)),
        "drop_block": jax.jit(lambda k, x: jr.drop_block(k, x, DROP_RATE, block_size=BLOCK_SIZE)),
    }


def _torchvision_transforms(torchvision: Any) -> dict[str, Callable[[Any], Any]]:
    v2 = importlib.import_module("torchvision.transforms.v2")
    return {"rand_augment": v2.RandAugment(), "trivial_augment": v2.TrivialAugmentWide(),
            "augmix": v2.AugMix(), "random_erasing": v2.RandomErasing(p=0.5)}


def run(quick: bool) -> list[Result]:
    """``quick``: 3 interleaved repetitions; else 15."""
    repeats = 3 if quick else 15
    case = "x".join(map(str, SHAPE))
    key = jax.random.key(0)
    batches = {"uint8": images("uint8"), "float32": images("float32")}
    fns = _jaxreg_fns()
    baseline = load_torchvision()
    rows = []
    cores = os.cpu_count() or 1
    ops = (("rand_augment", "uint8"), ("trivial_augment", "uint8"), ("augmix", "uint8"), ("random_erasing", "float32"))
    for name, dtype in ops:
        x = jnp.asarray(batches[dtype])
        ours = f"jr.{name}, jitted, whole batch"
        if isinstance(baseline, str):
            t = time_interleaved({"ours": lambda f=fns[name], x=x: f(key, x)}, repeats=repeats)
            rows.append(Result(BENCH, f"{case} {dtype}", ours, "torchvision v2, per-image loop", t["ours"],
                               float("nan"), float("nan"), target=TARGET, note=baseline))
            continue
        torch, torchvision, note = baseline
        transform = _torchvision_transforms(torchvision)[name]
        t = time_interleaved({"ours": lambda f=fns[name], x=x: f(key, x),
                              "torchvision": _per_image_loop(torch, transform, batches[dtype])},
                             repeats=repeats, warmup=2)
        ratio = t["ours"] / t["torchvision"]
        text = (f"speedup {1 / ratio:.1f}x against one worker, {1 / (ratio * cores):.1f}x against an ideal "
                f"{cores}-worker DataLoader (one per core); torchvision {torchvision.__version__}, "
                f"{TORCH_THREADS} torch thread")
        rows.append(Result(BENCH, f"{case} {dtype}", ours, f"torchvision v2 {type(transform).__name__}, per-image "
                           "loop", t["ours"], t["torchvision"], ratio, target=TARGET,
                           note="; ".join(filter(None, [text, note]))))

    x = jnp.asarray(batches["float32"])
    floor = jax.jit(lambda x: x * jnp.float32(1.0 / (1.0 - DROP_RATE)))
    timed: dict[str, Callable[[], Any]] = {"ours": lambda: fns["drop_block"](key, x), "floor": lambda: floor(x)}
    if not isinstance(baseline, str):
        torch, torchvision, note = baseline
        ops = importlib.import_module("torchvision.ops")
        x_nchw = torch.from_numpy(np.ascontiguousarray(batches["float32"].transpose(0, 3, 1, 2)))
        timed["torchvision"] = lambda: ops.drop_block2d(x_nchw, DROP_RATE, BLOCK_SIZE)
        torch.set_num_threads(cores)  # a layer of the model: torch's intra-op threads, one per core
    t = time_interleaved(timed, repeats=repeats, warmup=2)
    ours = f"jr.drop_block(rate={DROP_RATE}, block_size={BLOCK_SIZE}), jitted"
    rows.append(Result(BENCH, f"{case} float32", ours, "x * c (memory floor)", t["ours"], t["floor"],
                       t["ours"] / t["floor"], note="informational: seeds, a 7x7 max-pool and a count on top"))
    if isinstance(baseline, str):
        rows.append(Result(BENCH, f"{case} float32", ours, "torchvision.ops.drop_block2d", t["ours"], float("nan"),
                           float("nan"), note=baseline))
    else:
        rows.append(Result(BENCH, f"{case} float32", ours, "torchvision.ops.drop_block2d (NCHW, batched)",
                           t["ours"], t["torchvision"], t["ours"] / t["torchvision"],
                           note="; ".join(filter(None, [f"informational; {cores} torch threads", note]))))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for row in run(parser.parse_args().quick):
        print(row)
