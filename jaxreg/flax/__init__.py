"""Flax adapters (floor 4): thin linen and nnx modules over ``jaxreg.noise`` and ``jaxreg.norm``, and the bridges
of flax models to the training engine (``linen_apply``, ``nnx_apply``).

The layers add no behaviour of their own: each draws its key the framework's way (``make_rng`` in linen, an
``nnx.Rngs`` stream in nnx), keeps its state where the framework keeps it (the ``batch_stats`` collection,
``nnx.BatchStat``), and calls the functional core. Names, fields and variables follow ``flax.linen`` and
``flax.nnx``, so the modules are drop-ins for their flax namesakes::

    from jaxreg.flax import linen as jrl   # jrl.Dropout, jrl.BatchNorm, ...
    from jaxreg.flax import nnx as jrn     # jrn.Dropout(0.5, rngs=rngs), jrn.BatchNorm(64, rngs=rngs), ...

This subpackage is called ``flax`` inside ``jaxreg``; its modules import the real Flax with absolute imports
(``import flax.linen as nn``, ``from flax import nnx``), which always resolve to the top-level package.
"""

from __future__ import annotations

from jaxreg.flax import linen, nnx

__all__ = ["linen", "nnx"]
