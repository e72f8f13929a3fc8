"""jaxreg: functional regularization for JAX.

Penalties are pure functions of parameter pytrees, noise takes an explicit ``jax.random`` key, batch-norm
state is a returned pytree, and optimizer-side regularizers are ``optax.GradientTransformation``s, so all of
it composes inside one ``jax.jit``-compiled training step::

    import jaxreg as jr
    y = jr.dropout(key, x, 0.5)
    loss = task_loss + 1e-4 * jr.l2(params, mask=jr.kernel_mask)

Heavier, optional floors load on first use: ``jr.data``, ``jr.plots``, ``jr.checkpoint``, ``jr.parallel``,
``jr.flax`` (``jaxreg.flax.linen`` / ``jaxreg.flax.nnx``).
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxreg import augment, cv, early_stopping, metrics, noise, norm, penalties, select, train, transforms
from jaxreg.augment import *  # noqa: F403
from jaxreg.cv import *  # noqa: F403
from jaxreg.early_stopping import *  # noqa: F403
from jaxreg.metrics import *  # noqa: F403
from jaxreg.noise import *  # noqa: F403
from jaxreg.norm import *  # noqa: F403
from jaxreg.penalties import *  # noqa: F403
from jaxreg.select import kernel_mask, path_mask
from jaxreg.train import *  # noqa: F403
from jaxreg.transforms import *  # noqa: F403

__version__ = "0.1.0"

__all__ = [
    "kernel_mask",
    "path_mask",
    *penalties.__all__,
    *noise.__all__,
    *norm.__all__,
    *augment.__all__,
    *transforms.__all__,
    *early_stopping.__all__,
    *cv.__all__,
    *metrics.__all__,
    *train.__all__,
]

_LAZY_SUBMODULES = frozenset({"data", "plots", "checkpoint", "parallel", "flax", "cli", "experiments"})


def __getattr__(name: str) -> Any:
    # Floors that pull in tfds, matplotlib or orbax load on first use, keeping `import jaxreg` fast.
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"jaxreg.{name}")
    raise AttributeError(f"module 'jaxreg' has no attribute {name!r}")
