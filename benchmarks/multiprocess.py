"""What joining processes with ``jax.distributed`` costs the MLP training step (issue 14): 1 process against 2.

Workload: the engine's MLP step of :mod:`benchmarks.train_step` (784-512-512-10, dropout 0.5, L2, Adam) on a
global batch of 128, data-parallel over a :func:`jaxreg.parallel.data_mesh`: the batch split over the devices
(each process feeds its rows of every batch to ``shard_batch``), the state replicated. Cases, each in fresh
processes on this machine (CPU, one device per process, gloo collectives over 127.0.0.1):

* **1 process**: the step on one device (no collectives);
* **2 processes** (:func:`jaxreg.parallel.initialize`): each device computes half of the batch, and the
  gradients (2.6 MB) and the batch's loss and metrics are all-reduced between the processes every step.

The ratio (2 processes / 1 process, per step, medians of interleaved launches in one run) is the overhead of
the cross-process collectives: on a 2-core machine the two processes share the cores, so no speed-up is
possible here (see NOTES.md for what to expect on GPUs and TPUs).

Run: ``python -m benchmarks.multiprocess [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._timing import Result

BENCH = "multiprocess"
BATCH = 128
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(num_processes: int, process_id: int, port: int, steps: int) -> None:
    """One process of a case: time ``steps`` steps after a warm-up; process 0 prints the median as JSON."""
    import jax

    import jaxreg as jr

    if num_processes > 1:
        jr.parallel.initialize(f"127.0.0.1:{port}", num_processes, process_id, initialization_timeout=120)
    from benchmarks import train_step as step_bench

    mesh = jr.parallel.data_mesh()
    step, tx = step_bench.jaxreg_mlp_step()
    state = jr.parallel.replicate(mesh, step_bench.jaxreg_state(step_bench.mlp_params(), tx))
    x, y = step_bench.mlp_data(BATCH)
    rows = jr.parallel.local_rows(mesh, BATCH)
    batch = jr.parallel.shard_batch(mesh, (x[rows], y[rows]))  # each process feeds its own rows
    samples = []
    for i in range(steps + 3):  # 3 warm-up steps: compilation, first collectives
        start = time.perf_counter()
        state, metrics = step(state, *batch)
        jax.block_until_ready(metrics["loss"])
        if i >= 3:
            samples.append(time.perf_counter() - start)
    if jr.parallel.is_main_process():
        print(json.dumps({"step_s": statistics.median(samples), "devices": jax.device_count()}), flush=True)


def _case(num_processes: int, steps: int) -> float:
    """Median step seconds of one launch of ``num_processes`` processes (one CPU device each)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    root = str(Path(__file__).resolve().parent.parent)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.multiprocess", "--child", str(num_processes),
                               str(i), str(port), str(steps)], cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(num_processes)]
    try:
        outs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"a {num_processes}-process case failed (exit {p.returncode}): {err[-1500:]}")
    report = json.loads(outs[0][0].strip().splitlines()[-1])
    if report["devices"] != num_processes:
        raise RuntimeError(f"expected {num_processes} devices in all, the processes saw {report['devices']}.")
    return report["step_s"]


def run(quick: bool) -> list[Result]:
    """``quick``: one launch of each case, 10 timed steps; else 3 interleaved launches of each, 100 steps."""
    steps, rounds = (10, 1) if quick else (100, 3)
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for num in (1, 2) if r % 2 == 0 else (2, 1):
            times[num].append(_case(num, steps))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    return [
        Result(BENCH, f"MLP step, global batch {BATCH}, CPU", "2 processes x 1 device (gloo)",
               "1 process x 1 device", two, one, two / one,
               note=f"ratio = collectives' overhead on {os.cpu_count()} shared cores, not a speed-up; "
                    f"medians of {rounds} launch(es) x {steps} steps"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=4, type=int, metavar=("NUM_PROCESSES", "PROCESS_ID", "PORT", "STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
    else:
        for row in run(args.quick):
            print(row)
