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

**Multi-process (multi-host).** One process per host (or per GPU), all running the same program:
call :func:`initialize` first, before anything touches JAX's backend (on SLURM, Open MPI and TPU pods it
reads the cluster's own environment; elsewhere pass ``coordinator_address``, ``num_processes`` and
``process_id``), then :func:`check_same` on the run's configuration. ``data_mesh()`` spans ``jax.devices()``,
the devices of *all* processes. Place the training set with :func:`shard_dataset` (each process gives the
full arrays, or with ``local=True`` only its rows, :func:`local_rows`) and the state with :func:`replicate`
(the same initialization key in every process); :func:`jaxreg.fit`, :func:`jaxreg.fit_members` and the step
then run unchanged, and their metrics and histories are replicated, the same in every process. In a loop of
your own, each process gives :func:`shard_batch` its own part of every global batch. Orbax checkpoints
(:mod:`jaxreg.checkpoint`) are written and restored by all processes together, into one shared directory;
print, log and write reports from :func:`is_main_process` only. Recipes (SLURM, TPU pods, a 2-process run
on one machine), what each process loads, and how faults end a run: ``docs/multihost.md``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxreg._typing import PyTree
from jaxreg._validate import check_positive_int

__all__ = [
    "check_same",
    "data_mesh",
    "initialize",
    "is_main_process",
    "local_rows",
    "replicate",
    "shard_batch",
    "shard_dataset",
]


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
    sharding = NamedSharding(mesh, PartitionSpec())
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding, may_alias=False)
    return jax.tree.map(lambda leaf: _replicate_across_processes(sharding, leaf), tree)


def _replicate_across_processes(sharding: NamedSharding, leaf: Any) -> Any:
    """``device_put`` to devices of other processes: each process fills its own devices from its copy."""
    if not isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, complex, bool)):
        return leaf
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        return jax.device_put(leaf, sharding, may_alias=False)
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _replicate_across_processes(sharding, jax.random.key_data(leaf))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = np.asarray(leaf)
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)  # int64 -> int32 unless x64, as JAX
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])



# A dead peer ends the run within about this many seconds (JAX's default is 100): short enough not to leave a
# job hanging, long enough for a busy host's pauses (a long compilation keeps heartbeating in the background).
HEARTBEAT_TIMEOUT_SECONDS = 30
# How long a process waits at exit for the others to exit too (JAX's default is 300).
SHUTDOWN_TIMEOUT_SECONDS = 60


def _backends_initialized() -> bool:
    from jax._src import xla_bridge  # no public API tells this without creating the backend

    return bool(xla_bridge.backends_are_initialized())


def _check_address(coordinator_address: Any) -> None:
    if not isinstance(coordinator_address, str):
        raise TypeError(f"coordinator_address must be a 'HOST:PORT' string, got coordinator_address = "
                        f"{coordinator_address!r}.")
    host, sep, port = coordinator_address.rpartition(":")
    if not sep or not host:
        raise ValueError(f"coordinator_address must be 'HOST:PORT' (e.g. '10.0.0.1:1234'), got coordinator_address "
                         f"= {coordinator_address!r}.")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port of coordinator_address must be an integer in [1, 65535], got coordinator_address "
                         f"= {coordinator_address!r}.")


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: int | Sequence[int] | None = None,
    initialization_timeout: int = 300,
    heartbeat_timeout_seconds: int = HEARTBEAT_TIMEOUT_SECONDS,
    shutdown_timeout_seconds: int = SHUTDOWN_TIMEOUT_SECONDS,
) -> None:
    """Join this process to a multi-process JAX run: ``jax.distributed.initialize`` with jaxreg's defaults.

    Call it once per process, first, before anything creates JAX's backend (``jax.devices()``, an array, a
    jitted call). Arguments left ``None`` are read from the cluster's environment where JAX knows it (SLURM,
    Open MPI, TPU pods, ``JAX_COORDINATOR_ADDRESS``); elsewhere pass all three. On CPU the cross-process
    collectives are set to gloo (``jax_cpu_collectives_implementation``) unless MPI was chosen. The coordination
    service (in process 0) then watches every process: when one dies, the others end with an error after about
    ``heartbeat_timeout_seconds`` instead of hanging (JAX's own default, 100 s, is shortened here), and a
    process that finishes waits at most ``shutdown_timeout_seconds`` for the others at exit. These ends, and
    a coordinator not reached within ``initialization_timeout``, are JAX's: the process aborts (non-zero exit)
    after logging why, without a Python exception. A collective whose peer is gone raises at once
    (``jax.errors.JaxRuntimeError``, gloo's "Connection closed by peer").

    Args:
      coordinator_address: ``"HOST:PORT"`` of process 0, reachable from every process; None: from the cluster.
      num_processes: the number of processes, >= 1; None: from the cluster.
      process_id: this process's index in ``[0, num_processes)``; process 0 hosts the coordinator; None: from
        the cluster.
      local_device_ids: the local accelerators this process uses (GPU clusters with one process per GPU);
        None: all (or the cluster's choice).
      initialization_timeout: seconds to wait for every process to connect.
      heartbeat_timeout_seconds: seconds without a heartbeat after which a process is declared dead and the
        others stop with an error.
      shutdown_timeout_seconds: seconds a process waits at exit for the others to reach exit too.

    Raises:
      ValueError: if ``coordinator_address`` is not ``HOST:PORT`` with a port in [1, 65535],
        ``num_processes < 1``, ``process_id`` is outside ``[0, num_processes)``, a timeout is not >= 1, or no
        argument is given and no cluster environment is found.
      TypeError: if an argument has the wrong type.
      RuntimeError: if JAX's backend is already initialized in this process, or this process already joined.

    Example:
      >>> import jaxreg as jr
      >>> try:                                        # port 0 is refused before anything starts
      ...     jr.parallel.initialize("127.0.0.1:0", 2, 0)
      ... except ValueError as err:
      ...     print(err)
      the port of coordinator_address must be an integer in [1, 65535], got coordinator_address = '127.0.0.1:0'.
    """
    if coordinator_address is not None:
        _check_address(coordinator_address)
    if num_processes is not None:
        num_processes = check_positive_int("num_processes", num_processes)
    if process_id is not None:
        process_id = check_positive_int("process_id", process_id, minimum=0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"process_id must be in [0, num_processes) = [0, {num_processes}), got process_id = "
                             f"{process_id}.")
    for name, value in (("initialization_timeout", initialization_timeout),
                        ("heartbeat_timeout_seconds", heartbeat_timeout_seconds),
                        ("shutdown_timeout_seconds", shutdown_timeout_seconds)):
        check_positive_int(name, value)
    if jax.distributed.is_initialized():
        raise RuntimeError("jr.parallel.initialize was already called in this process; call it once, at start.")
    if _backends_initialized():
        raise RuntimeError(
            "jr.parallel.initialize must run before anything uses JAX's backend in this process (jax.devices(), "
            "an array, a jitted call, jr.parallel.data_mesh()); call it first, at the top of the program.")
    platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
    if (not platforms or "cpu" in platforms.split(",")) and (
            jax.config.jax_cpu_collectives_implementation not in ("gloo", "mpi")):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address, num_processes, process_id, local_device_ids=local_device_ids,
            initialization_timeout=initialization_timeout, heartbeat_timeout_seconds=heartbeat_timeout_seconds,
            shutdown_timeout_seconds=shutdown_timeout_seconds)
    except ValueError as err:
        if coordinator_address is None and num_processes is None and process_id is None:
            raise ValueError(
                "jr.parallel.initialize found no cluster environment (SLURM, Open MPI, TPU pod, "
                "JAX_COORDINATOR_ADDRESS); pass coordinator_address, num_processes and process_id.") from err
        raise


def is_main_process() -> bool:
    """Whether this is process 0, the one that prints, logs and writes reports and figures.

    Returns:
      ``jax.process_index() == 0`` (always True in a single-process run).

    Example:
      >>> import jaxreg as jr
      >>> jr.parallel.is_main_process()
      True
    """
    return jax.process_index() == 0


def _fingerprint(value: Any) -> bytes:
    """8 bytes that differ, but for hash collisions, when ``value`` differs (arrays: dtype, shape and bytes)."""
    if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, np.generic):
        array = np.asarray(value)
        text = f"{array.dtype}{array.shape}".encode() + np.ascontiguousarray(array).tobytes()
    else:
        text = repr(value).encode()
    return hashlib.sha256(text).digest()[:8]


def _gather_fingerprints(fingerprints: list[bytes]) -> np.ndarray:
    """``(processes, len(fingerprints), 2)`` uint32: every process's fingerprints, gathered by JAX's collectives."""
    from jax.experimental import multihost_utils

    local = np.frombuffer(b"".join(fingerprints), dtype=np.uint32).reshape(len(fingerprints), 2)
    return np.asarray(multihost_utils.process_allgather(local)).reshape(-1, len(fingerprints), 2)


def check_same(name_to_value: Mapping[str, Any], *, what: str = "argument") -> None:
    """Refuse a run whose processes were started with different configurations, naming what differs.

    Every process calls it with the values it was started with (seed, techniques, dataset, epochs...); a hash
    of each value is gathered from every process (``jax.experimental.multihost_utils.process_allgather``) and
    compared with process 0's. Values are compared by ``repr`` (arrays: dtype, shape and bytes), so give
    values whose ``repr`` is deterministic (numbers, strings, tuples, dataclasses of those). A no-op in a
    single-process run.

    Args:
      name_to_value: ``{name: value}``, with the same names in the same order in every process.
      what: the word for a name in the error message (e.g. ``"argument"``, ``"option"``).

    Raises:
      ValueError: in every process, if a value differs between processes: it names the differing name(s),
        the processes that differ from process 0, and this process's value; or if the processes checked
        different names.
      TypeError: if ``name_to_value`` is not a mapping with string keys.

    Example:
      >>> import jaxreg as jr
      >>> jr.parallel.check_same({"seed": 0, "techniques": ("none", "l2")})   # one process: nothing to compare
    """
    if not isinstance(name_to_value, Mapping) or not all(isinstance(name, str) for name in name_to_value):
        raise TypeError(f"name_to_value must be a mapping from names (str) to values, got {name_to_value!r}.")
    fingerprints = [_fingerprint(value) for value in name_to_value.values()]
    if jax.process_count() == 1:
        return
    names = list(name_to_value)
    gathered = _gather_fingerprints([_fingerprint(tuple(names))])
    if (gathered != gathered[0]).any():
        raise ValueError(f"check_same was called with different {what} names in different processes; this process "
                         f"({jax.process_index()}) checked {names}.")
    gathered = _gather_fingerprints(fingerprints) if fingerprints else np.zeros((1, 0, 2), np.uint32)
    differs = (gathered != gathered[0]).any(axis=-1)  # (processes, names)
    bad = [i for i in range(len(names)) if differs[:, i].any()]
    if bad:
        me = jax.process_index()
        listed = "; ".join(
            f"{names[i]} differs on process(es) {np.flatnonzero(differs[:, i]).tolist()} from process 0 (this "
            f"process, {me}, has {names[i]} = {name_to_value[names[i]]!r})" for i in bad)
        raise ValueError(f"the processes were started with different {what}s: {listed}. Start every process with "
                         f"the same {', '.join(names[i] for i in bad)}.")


def _check_rows(mesh: Mesh, data: PyTree, axis_name: str, num: int, whose: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(data):
        shape = np.shape(leaf)
        where = jax.tree_util.keystr(path)
        if not shape:
            raise ValueError(f"data{where} is a scalar; every array needs a leading example axis to shard.")
        if shape[0] % num:
            raise ValueError(
                f"{shape[0]} examples (data{where}) are not divisible by the {num} devices of {whose}mesh axis "
                f"{axis_name!r}; drop the last {shape[0] % num} examples (or pad) to a multiple of {num}.")


def local_rows(mesh: Mesh, num_examples: int, *, axis_name: str = "data") -> slice:
    """The rows of a global dataset of ``num_examples`` that this process's devices hold on ``mesh``.

    With ``shard_dataset(mesh, data, local=True)`` each process loads only these rows of the global arrays
    (``x[local_rows(mesh, n)]``): process ``i`` of ``P`` gets ``n // P`` consecutive rows on a
    :func:`data_mesh` (whose devices are in process order).

    Args:
      mesh: from :func:`data_mesh`.
      num_examples: the global number of examples, divisible by the mesh's devices along ``axis_name``.
      axis_name: the mesh axis the examples are split along.

    Returns:
      ``slice(start, stop)``; ``slice(0, num_examples)`` in a single-process run.

    Raises:
      ValueError: if ``num_examples`` is not divisible by the devices along ``axis_name``, or this process's
        rows are not contiguous (a mesh whose devices are not grouped by process).
      TypeError: if ``mesh`` is not a ``jax.sharding.Mesh``.

    Example:
      >>> import jaxreg as jr
      >>> jr.parallel.local_rows(jr.parallel.data_mesh(), 8)
      slice(0, 8, None)
    """
    num = _axis_size(mesh, axis_name)
    num_examples = check_positive_int("num_examples", num_examples)
    if num_examples % num:
        raise ValueError(f"num_examples = {num_examples} is not divisible by the {num} devices of mesh axis "
                         f"{axis_name!r}.")
    indices = NamedSharding(mesh, PartitionSpec(axis_name)).addressable_devices_indices_map((num_examples,))
    bounds = sorted({(index[0].start or 0, num_examples if index[0].stop is None else index[0].stop)
                     for index in indices.values()})
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        if stop != start:
            raise ValueError(f"this process's rows on mesh axis {axis_name!r} are not contiguous ({bounds}); build "
                             "the mesh with jr.parallel.data_mesh(), whose devices are in process order.")
    return slice(bounds[0][0], bounds[-1][1])


def shard_dataset(mesh: Mesh, data: PyTree, *, local: bool = False, axis_name: str = "data") -> PyTree:
    """A training or validation set as global arrays on ``mesh``, split along the example axis (for ``jr.fit``).

    In every process call it the same way. With ``local=False`` each process passes the **full** arrays (every
    process loaded the whole dataset) and only the rows of its own devices are copied to them
    (``jax.make_array_from_callback``). With ``local=True`` each process passes only its rows,
    ``x[local_rows(mesh, n)]`` (it never loads the others), and the global array is assembled from the
    processes' parts (``jax.make_array_from_process_local_data``), in process order. Both give the same global
    array, so :func:`jaxreg.fit` (state placed with :func:`replicate`) shuffles and trains exactly as on one
    process with the same global device count. In a single-process run both are :func:`shard_batch`.

    Args:
      mesh: from :func:`data_mesh`.
      data: a pytree of arrays sharing a leading example axis, e.g. ``(x, y)``; ``None`` leaves stay ``None``.
      local: whether ``data`` holds only this process's rows (see above) instead of the full arrays.
      axis_name: the mesh axis to split along.

    Returns:
      The same pytree, every array a global ``jax.Array`` with ``NamedSharding(mesh, PartitionSpec(axis_name))``.

    Raises:
      ValueError: if the number of examples is not divisible by the devices along ``axis_name`` (with
        ``local=True``: by this process's devices), or an array is a scalar.
      TypeError: if ``mesh`` is not a ``jax.sharding.Mesh`` or ``local`` not a bool.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import jaxreg as jr
      >>> mesh = jr.parallel.data_mesh()
      >>> x, y = jr.parallel.shard_dataset(mesh, (jnp.ones((8, 3)), jnp.arange(8)))
      >>> x.shape, x.sharding.spec == jax.sharding.PartitionSpec("data")
      ((8, 3), True)
    """
    if not isinstance(local, bool):
        raise TypeError(f"local must be a bool, got local = {local!r}.")
    num = _axis_size(mesh, axis_name)
    if local or jax.process_count() == 1:
        return shard_batch(mesh, data, axis_name=axis_name)
    _check_rows(mesh, data, axis_name, num, "")
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))

    def place(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)  # already global: only re-placed
        full = np.asarray(leaf)
        return jax.make_array_from_callback(np.shape(full), sharding, lambda index: full[index])

    return jax.tree.map(place, data)
