"""``jaxreg compare`` in 2 processes joined on 127.0.0.1 (issue 14): the command's multi-process options.

References: the same command in ONE process with the same global device count (2 host devices), whose
``results.json`` accuracies the 2-process run must match to 1e-3 (only the all-reduce summation order
differs); process 0 alone writes ``--out`` and prints, even when every process is given the same ``--out``; a
process started with another ``--seed`` is refused in every process, the option named. Every process has a
timeout; loopback only. Marked slow (``make test-slow``, CI).
"""

import json
import os
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TIMEOUT_S = 180
COMMAND = ["compare", "--techniques", "none,dropout", "--epochs", "2", "--quiet"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    return env


def _processes(args_of_process: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run ``jaxreg ARGS`` once per entry, joined as one run; kill every process past the timeout."""
    port = _free_port()
    running = []
    for i, args in enumerate(args_of_process):
        joined = ["--coordinator-address", f"127.0.0.1:{port}", "--num-processes", str(len(args_of_process)),
                  "--process-id", str(i)]
        running.append(subprocess.Popen([sys.executable, "-m", "jaxreg.cli", *args, *joined], env=_env(1),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    try:
        for proc in running:
            out, err = proc.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def test_two_processes_give_one_process_results_and_only_process_0_writes(tmp_path):
    out = tmp_path / "two"
    first, second = _processes([[*COMMAND, "--out", str(out)]] * 2)  # the same --out for both
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert "| none" in first.stdout and second.stdout == ""  # process 0 prints the table, process 1 nothing
    one = subprocess.run([sys.executable, "-m", "jaxreg.cli", *COMMAND, "--out", str(tmp_path / "one")],
                         env=_env(2), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert one.returncode == 0, one.stderr
    two_runs = json.loads((out / "results.json").read_text())["runs"]
    one_runs = json.loads((tmp_path / "one" / "results.json").read_text())["runs"]
    assert [r["technique"] for r in two_runs] == ["none", "dropout"]
    for a, b in zip(two_runs, one_runs):
        for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-3), (a["technique"], key)
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-3)


def test_a_process_started_with_another_seed_is_refused_naming_it(tmp_path):
    results = _processes([[*COMMAND, "--out", str(tmp_path / "a")],
                          [*COMMAND, "--seed", "1", "--out", str(tmp_path / "b")]])
    for done in results:
        assert done.returncode == 2, done.stderr
        assert "--seed" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "a" / "results.json").exists()
