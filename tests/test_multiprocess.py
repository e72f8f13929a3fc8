"""Multi-process training on ``jax.distributed`` (issue 14): 2 CPU processes joined on 127.0.0.1, gloo collectives.

Each run is ``tests/_multiprocess_worker.py`` in fresh processes (``sys.executable``), every one with a
``timeout``, on loopback only, with 1 or 2 host devices per process (``XLA_FLAGS``). References:

* dropout masks: ``jax.random.bernoulli(key, 1 - rate, shape)`` on one device (``jr.dropout``'s documented mask,
  = ``flax.linen.Dropout``'s), bit for bit, and the 1-device run's hash masks;
* losses, parameters and histories: one process with the same global device count (2 or 4 devices) and one
  process with one device, to float tolerance ``rtol = 1e-5, atol = 1e-6`` (histories: ``atol = 1e-5``, the
  weight norms are sums of hundreds of terms): only the all-reduce summation order differs;
* the processes of one run against each other: identical arrays and histories (replicated outputs);
* a 2-process ``resumable_fit`` killed (SIGKILL) after epoch 1 and started again: the uninterrupted 2-process
  ``jr.fit`` with the same arguments, bit for bit (``resumable_fit``'s documented contract);
* a dead peer: the survivor exits non-zero within the test's bound (heartbeat 5 s);
* different seeds: refused in every process, naming ``seed``.

Compilations are shared between the runs through a persistent compilation cache in a temporary directory.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_multiprocess_worker.py")
TIMEOUT_S = 120  # per run; a run that takes longer is killed and fails the test
RTOL, ATOL, HISTORY_ATOL = 1e-5, 1e-6, 1e-5
# (processes, devices per process); one process: the references. Started by groups of two processes.
GROUPS = (((1, 1), (1, 2)), ((2, 1),), ((1, 4),), ((2, 2),))
CONFIGS = tuple(config for group in GROUPS for config in group)
MEMBERS = ((1, 1), (1, 2), (2, 1))  # the members loop (jr.sweep_fit) is checked once, on 2 processes x 1 device


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(scenario: str, out: Path, *, processes: int, devices: int, cache: Path,
           extra: tuple = ()) -> list[subprocess.Popen]:
    """Start the worker's ``scenario`` in ``processes`` processes joined on a free loopback port."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    port = _free_port()
    running = []
    for i in range(processes):
        args = [sys.executable, str(WORKER), scenario, str(out), *extra]
        if processes > 1:
            args += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i)]
        running.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return running


def _wait(running: list[subprocess.Popen], timeout: float = TIMEOUT_S) -> list[subprocess.CompletedProcess]:
    """Wait for every process (killing all of them past ``timeout`` seconds); their rc, stdout and stderr."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for proc in running:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _launch(scenario: str, out: Path, *, processes: int, devices: int, cache: Path, extra: tuple = (),
            timeout: float = TIMEOUT_S) -> list[subprocess.CompletedProcess]:
    """Run the worker's ``scenario`` in ``processes`` processes at once and wait for them."""
    return _wait(_start(scenario, out, processes=processes, devices=devices, cache=cache, extra=extra), timeout)


def _ok(results: list[subprocess.CompletedProcess]) -> None:
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]


def _load(out: Path, process: int = 0) -> tuple[dict, dict]:
    with np.load(out / f"p{process}.npz") as arrays:
        return dict(arrays), json.loads((out / f"p{process}.json").read_text())


def _history_columns(tree, prefix: str = ""):
    if isinstance(tree, dict):
        for name, value in tree.items():
            yield from _history_columns(value, f"{prefix}/{name}")
    elif isinstance(tree, list) and tree and isinstance(tree[0], dict):
        for i, value in enumerate(tree):
            yield from _history_columns(value, f"{prefix}[{i}]")
    else:
        yield prefix, np.asarray(tree, dtype=np.float64)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every configuration's ``train`` scenario: ``{(processes, devices): out_dir}``; plus the cache dir."""
    root = tmp_path_factory.mktemp("multiprocess")
    cache = root / "jax-cache"
    outs = {config: root / f"train-{config[0]}x{config[1]}" for config in CONFIGS}
    for group in GROUPS:  # two processes at a time, one per core
        running = [_start("train", outs[config], processes=config[0], devices=config[1], cache=cache,
                          extra=("--members",) if config in MEMBERS else ()) for config in group]
        for procs in running:
            _ok(_wait(procs))
    return {"outs": outs, "cache": cache, "root": root}


def test_dropout_masks_are_bitwise_equal_across_processes_and_devices(runs):
    """Reference: jax.random.bernoulli(key, 1 - rate) on one device (prng masks); the 1-device run (hash)."""
    keep = np.asarray(jax.random.bernoulli(jax.random.key(3), 0.5, (16, 64)))
    one_device, _ = _load(runs["outs"][1, 1])
    np.testing.assert_array_equal(one_device["mask_prng"], keep)
    for (processes, devices), out in runs["outs"].items():
        for process in range(processes):
            arrays, _ = _load(out, process)
            where = f"{processes} process(es) x {devices} device(s), process {process}"
            np.testing.assert_array_equal(arrays["mask_prng"], keep, err_msg=where)
            np.testing.assert_array_equal(arrays["mask_hash"], one_device["mask_hash"], err_msg=where)


@pytest.mark.parametrize("devices", [1, 2])
def test_two_processes_match_one_process_and_one_device(runs, devices):
    """Reference: one process with the same global device count (2 * devices), and one process with one device."""
    two, two_history = _load(runs["outs"][2, devices])
    for reference in ((1, 2 * devices), (1, 1)):
        ref, ref_history = _load(runs["outs"][reference])
        if (2, devices) in MEMBERS and reference in MEMBERS:
            assert {"sweep_0", "sweep_3"} <= two.keys()
        for name in two.keys() & ref.keys():
            if name.startswith("mask"):
                continue
            np.testing.assert_allclose(two[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=f"{name} vs {reference}")
        columns, ref_columns = dict(_history_columns(two_history)), dict(_history_columns(ref_history))
        assert "/fit/val_loss" in columns.keys() & ref_columns.keys()
        for name in columns.keys() & ref_columns.keys():
            values = columns[name]
            np.testing.assert_allclose(values, ref_columns[name], rtol=RTOL, atol=HISTORY_ATOL,
                                       err_msg=f"{name} vs {reference}")


@pytest.mark.parametrize("devices", [1, 2])
def test_every_process_gets_the_same_metrics_and_params(runs, devices):
    """Reference: process 0 of the same run. Replicated outputs: bit for bit, histories included."""
    arrays0, history0 = _load(runs["outs"][2, devices], 0)
    arrays1, history1 = _load(runs["outs"][2, devices], 1)
    assert history0 == history1 and len(history0["fit"]["epoch"]) == 3
    for name in arrays0:
        np.testing.assert_array_equal(arrays0[name], arrays1[name], err_msg=name)


def test_killed_two_process_run_resumes_to_the_uninterrupted_result(runs):
    """Reference: the uninterrupted 2-process jr.fit of the train scenario (same data, step, key, epochs)."""
    ckpt, out = runs["root"] / "ckpt", runs["root"] / "killed"
    killed = _launch("killed", out, processes=2, devices=1, cache=runs["cache"], extra=("--ckpt", str(ckpt)))
    # Each kills itself after epoch 1's save; process 1 may instead be ended by JAX (SIGABRT) when it notices
    # first that process 0, which hosts the coordination service, is gone.
    assert killed[0].returncode == -9 and killed[1].returncode in (-9, -6), [r.stderr[-2000:] for r in killed]
    resumed = _launch("resume", runs["root"] / "resumed", processes=2, devices=1, cache=runs["cache"],
                      extra=("--ckpt", str(ckpt)))
    _ok(resumed)
    uninterrupted, history = _load(runs["outs"][2, 1])
    for process in range(2):
        arrays, resumed_history = _load(runs["root"] / "resumed", process)
        # The killed run left epoch 1's checkpoint, sealed by process 0 after every process had written it.
        assert 1 in arrays["epochs_before"] and 1 in arrays["sealed_before"], arrays["epochs_before"]
        assert resumed_history["resumable"] == history["fit"]
        for i in range(4):
            np.testing.assert_array_equal(arrays[f"resumable_{i}"], uninterrupted[f"fit_{i}"])


def test_a_dead_peer_ends_the_other_process_in_bounded_time(runs):
    """Reference: the bound itself. Process 1 is SIGKILLed; process 0 must exit non-zero, well before the timeout."""
    start = time.monotonic()
    results = _launch("dead_peer", runs["root"] / "dead", processes=2, devices=1, cache=runs["cache"],
                      extra=("--heartbeat", "5"), timeout=90)
    assert results[1].returncode == -9
    assert results[0].returncode != 0, results[0].stderr[-2000:]
    assert time.monotonic() - start < 90
    assert "peer" in results[0].stderr or "another task died" in results[0].stderr, results[0].stderr[-2000:]


def test_processes_started_with_different_seeds_are_refused_naming_the_argument(runs):
    """Reference: the worker's check_same({'scenario', 'seed', 'epochs'}) with seed = process id."""
    results = _launch("mismatch", runs["root"] / "mismatch", processes=2, devices=1, cache=runs["cache"])
    for process, result in enumerate(results):
        assert result.returncode == 2, result.stderr[-2000:]
        assert "different arguments: seed differs on process(es) [1] from process 0" in result.stderr
        assert f"this process, {process}, has seed = {process}" in result.stderr
        assert "epochs" not in result.stderr.split("worker:")[1]
