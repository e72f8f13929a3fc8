"""Data parallelism over devices and hosts with ``jax.sharding`` (floor 6; ``jr.parallel``, lazily loaded).

Nothing home-made: a :class:`jax.sharding.Mesh` over the devices with one ``"data"`` axis, the batch split
along its leading (example) axis (``NamedSharding(mesh, P("data"))``), the training state replicated
(``NamedSharding(mesh, P())``), and the **same** jitted step as on one device::

    mesh = jr.parallel.data_mesh()                         # every visible device, axis "data"
    state = jr.parallel.replicate(mesh, state)             # params, optimizer state, key, batch-norm stats
    for x, y in batches:
        x, y = jr.parallel.shard_batch(mesh, (x, y))       # ValueError unless batch % devices == 0
        state, metrics = train_step(state, x, y)           # jit partitions it; gradients all-reduced by XLA

``jax.jit`` propagates the input shardings: every device runs the forward and backward pass on its slice of
the batch, and the reductions over the batch (the mean loss, hence the gradient; ``jr.batch_norm``'s mean and
variance, which are plain ``jnp`` reductions over the global batch) become all-reduces that XLA inserts. So:

* **Batch-norm statistics are global**, computed over the whole sharded batch, exactly as on one device:
  no ``axis_name`` and no ``pmean`` are needed (those are for ``shard_map``/``pmap``/``vmap`` code).
* **Dropout masks do not depend on the number of devices.** A mask is a function of the key and of each
  element's position in the *global* array: with ``jax_threefry_partitionable`` (the default since JAX 0.5)
  ``jax.random.bits`` of a sharded shape is computed shard by shard from global element indices, and
  ``jr.dropout``'s own fused threefry and hash masks are built from global iotas in the same way. The same key
  gives the same mask, bit for bit, on 1 or 8 devices (``tests/test_parallel.py`` checks this).
* Results equal the one-device run up to the order of floating-point summation in the all-reduces
  (float tolerance, not bits).

:func:`jaxreg.fit` works unchanged on a replicated state and a training set placed with :func:`shard_batch`
(the number of examples divisible by the device count): its epoch gathers each shuffled batch from the
sharded arrays inside one jitted program, with the same results as on one device; how XLA then partitions
the gathered batches is its choice. For a guaranteed per-step data-parallel layout, drive the step yourself
as above.

**Multi-host.** Call ``jax.distributed.initialize()`` at the start of every process (one per host; on TPU
pods and SLURM/Open MPI clusters it finds its coordinator by itself), then run the same code.
``data_mesh()`` spans ``jax.devices()``, i.e. the devices of *all* processes; each process loads only its own
part of every batch (``global_batch // jax.process_count()`` examples) and :func:`shard_batch` assembles the
global array from those local parts with ``jax.make_array_from_process_local_data``; :func:`replicate` needs
the same state in every process (same initialization key). Metrics returned by the step are replicated, so
every process can read them. Orbax checkpoints (:mod:`jaxreg.checkpoint`) are written by all processes
together: call the hook in every process (to a shared directory); print and log from process 0 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxreg._typing import PyTree

__all__ = ["data_mesh", "shard_batch", "replicate"]


def data_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = "data") -> Mesh:
    """A one-axis :class:`jax.sharding.Mesh` for data parallelism.

    Args:
      devices: the devices to use, in order; ``None`` for ``jax.devices()`` (all devices of all processes).
      axis_name: the name of the mesh axis the batch is split along.

    Returns:
      ``Mesh(np.array(devices), (axis_name,))``.

    Raises:
      ValueError: if ``devices`` is empty.
      TypeError: if ``axis_name`` is not a non-empty string.

    Example:
      >>> import jax
      >>> import jaxreg as jr
      >>> mesh = jr.parallel.data_mesh()
      >>> mesh.axis_names, mesh.shape["data"] == jax.device_count()
      (('data',), True)
    """
    if not isinstance(axis_name, str) or not axis_name:
        raise TypeError(f"axis_name must be a non-empty string, got axis_name = {axis_name!r}.")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device, got an empty sequence.")
    return Mesh(np.asarray(devices), (axis_name,))


def _axis_size(mesh: Mesh, axis_name: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (see data_mesh), got mesh = {mesh!r}.")
    if axis_name not in mesh.shape:
        raise ValueError(f"mesh has no axis {axis_name!r}; its axes are {tuple(mesh.axis_names)}.")
    return int(mesh.shape[axis_name])


def shard_batch(mesh: Mesh, batch: PyTree, *, axis_name: str = "data") -> PyTree:
    """Place every array of ``batch`` on ``mesh``, split along its leading (example) axis.

    In a single process ``batch`` is the global batch. With several processes (multi-host, after
    ``jax.distributed.initialize()``) each process passes its *local* part, and the global array is assembled
    with ``jax.make_array_from_process_local_data`` (global batch = local batch times the process count).

    Args:
      mesh: from :func:`data_mesh`.
      batch: a pytree of arrays (``(x, y)``, ``(x, y, weights)``, a dict...) sharing a leading batch axis;
        ``None`` leaves (e.g. absent weights) stay ``None``.
      axis_name: the mesh axis to split along.

    Returns:
      The same pytree, every array a ``jax.Array`` with ``NamedSharding(mesh, PartitionSpec(axis_name))``.

    Raises:
      ValueError: if an array's leading size is not divisible by the number of devices along
        ``axis_name`` (in multi-process use: by the number of this process's devices), if an array is a
        scalar, or if the mesh has no such axis.
      TypeError: if ``mesh`` is not a ``jax.sharding.Mesh``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> mesh = jr.parallel.data_mesh()
      >>> x, y = jr.parallel.shard_batch(mesh, (jnp.ones((8, 3)), jnp.arange(8)))
      >>> x.sharding.spec == jax.sharding.PartitionSpec("data"), x.shape
      (True, (8, 3))
    """
    num = _axis_size(mesh, axis_name)
    multi_process = jax.process_count() > 1
    if multi_process:
        num = len({d for d in mesh.devices.flat if d.process_index == jax.process_index()})
    for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path) or "batch"
        if not shape:
            raise ValueError(f"batch{where if where != 'batch' else ''} is a scalar; every array needs a leading "
                             "batch axis to shard.")
        if shape[0] % num:
            raise ValueError(
                f"batch size {shape[0]} (batch{where if where != 'batch' else ''}) is not divisible by the "
                f"{num} devices of mesh axis {axis_name!r}; use a batch size that is a multiple of {num}."
            )
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    if multi_process:
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)
    return jax.device_put(batch, sharding)


def replicate(mesh: Mesh, tree: PyTree) -> PyTree:
    """Place a full copy of every array of ``tree`` on every device of ``mesh`` (``PartitionSpec()``).

    Use it for the training state (params, optimizer and model state, typed keys included) and for any
    constant the step reads. The returned arrays are fresh device buffers, so donating them to a step leaves
    ``tree`` valid.

    Args:
      mesh: from :func:`data_mesh`.
      tree: a pytree of arrays, e.g. a :class:`jaxreg.TrainState`. In multi-process use every process must
        pass the same values.

    Returns:
      The same pytree with ``NamedSharding(mesh, PartitionSpec())`` arrays.

    Raises:
      TypeError: if ``mesh`` is not a ``jax.sharding.Mesh``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> mesh = jr.parallel.data_mesh()
      >>> params = jr.parallel.replicate(mesh, {"w": jnp.ones(3)})
      >>> params["w"].sharding.is_fully_replicated
      True
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (see data_mesh), got mesh = {mesh!r}.")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()), may_alias=False)

