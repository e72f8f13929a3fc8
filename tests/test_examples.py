"""Every script of ``examples/`` runs with ``--tiny`` and prints its result line.

The examples run in ONE subprocess (``runpy``, as ``python examples/NAME.py --tiny`` would run each, with the
script's folder first on ``sys.path``), so the interpreter and JAX start once instead of once per script.
That subprocess compiles with ``--xla_backend_optimization_level=0`` unless ``XLA_FLAGS`` is already set:
the tiny runs are dominated by XLA compile time, which this roughly halves, and the printed results were
identical with and without it when this was written (numerics are not what these smoke tests check).

Besides "exits 0 and prints the line", the lines are checked where they can be wrong: the proximal L1
example must report exact zeros and the subgradient L1 none; the k-means example's cluster purity must be
far above chance and close to scikit-learn's ``KMeans`` (the independent reference it prints).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Every example in fresh interpreters, compiled from scratch (about a minute): make test-slow (and CI) runs
# them; the library calls they make are covered piece by piece in make test.
pytestmark = pytest.mark.slow

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"

# The last line each example prints, as a regular expression.
EXPECTED = {
    "augmentation": r"test accuracy 0\.\d{4}, mc_predict \(\d+ masks\) 0\.\d{4}",
    "dropout_mlp": r"test accuracy: no dropout 0\.\d{4}, dropout 0\.5 0\.\d{4}",
    "penalties": r"exact zeros: l1 (?P<l1>\d+\.\d+)%, proximal_l1 (?P<prox>\d+\.\d+)%",
    "regression": r"lowest test MSE: (none|dropout|batchnorm|dropout\+batchnorm) \d+\.\d{4}; "
                  r"ridge regression (?P<ridge>\d+\.\d{4})",
    "cnn": r"test accuracy 0\.\d{4}",
    "transformer": r"test accuracy 0\.\d{4}",
    "kfold": r"best l2 by 5-fold cross-validation: \S+ \(20 members, one program\)",
    "early_stopping": r"early stopping \(patience 0\): [1-3] epochs, best epoch [1-3] restored; "
                      r"test loss \d+\.\d{4}, test accuracy 0\.\d{4}",
    "bias_variance": r"best validation accuracy at l2 = \S+ \(7 models, one program\)",
    "kmeans_digits": r"cluster purity: jax (?P<jax>0\.\d{4}), sklearn (?P<sklearn>0\.\d{4})",
}

_DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback
results = {}
out_path, paths = sys.argv[1], sys.argv[2:]
for path in paths:
    buffer = io.StringIO()
    sys.argv = [path, "--tiny"]
    sys.path.insert(0, path.rsplit("/", 1)[0])
    status = 0
    try:
        with contextlib.redirect_stdout(buffer):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        status = 1
        buffer.write(traceback.format_exc())
    finally:
        sys.path.pop(0)
    results[path] = {"status": status, "stdout": buffer.getvalue()}
with open(out_path, "w") as f:
    json.dump(results, f)
"""


@functools.cache
def _run_examples() -> dict[str, tuple[int, str]]:
    # Cached in the process, not only in the module fixture: an xdist worker whose queue runs dry tears module
    # fixtures down, and running every example again costs about a minute (make test sends each test file to
    # one worker: --dist loadfile).
    paths = [str(EXAMPLES_DIR / f"{name}.py") for name in EXPECTED]
    env = dict(os.environ)
    env.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "outputs.json"
        proc = subprocess.run([sys.executable, "-c", _DRIVER, str(out), *paths], env=env, capture_output=True,
                              text=True, timeout=600, cwd=EXAMPLES_DIR.parent)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = json.loads(out.read_text())
    return {Path(path).stem: (r["status"], r["stdout"]) for path, r in results.items()}


@pytest.fixture(scope="module")
def outputs():
    """``{name: (status, stdout)}`` of every example run with ``--tiny``."""
    return _run_examples()


def test_every_example_is_tested():
    scripts = {p.stem for p in EXAMPLES_DIR.glob("*.py")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_prints_its_result(outputs, name):
    status, stdout = outputs[name]
    assert status == 0, stdout[-3000:]
    last = stdout.strip().splitlines()[-1]
    assert re.fullmatch(EXPECTED[name], last), last


def _match(outputs, name):
    return re.fullmatch(EXPECTED[name], outputs[name][1].strip().splitlines()[-1])


def test_proximal_l1_example_makes_exact_zeros_and_l1_does_not(outputs):
    match = _match(outputs, "penalties")
    assert float(match["l1"]) == 0.0 and float(match["prox"]) > 0.0


def test_regression_example_ridge_explains_about_half_the_variance(outputs):
    # Standardized diabetes target: a linear model explains about half its variance (test R^2 ~ 0.45, the usual
    # figure for this data set), so its test MSE is near 0.5, far below the variance 1.
    assert 0.35 < float(_match(outputs, "regression")["ridge"]) < 0.75


def test_kmeans_example_is_far_above_chance_and_close_to_sklearn(outputs):
    match = _match(outputs, "kmeans_digits")
    jax_purity, sklearn_purity = float(match["jax"]), float(match["sklearn"])
    # Chance purity of 10 clusters on 10 balanced classes is about 0.1-0.2.
    assert jax_purity > 0.5 and sklearn_purity > 0.5
    assert abs(jax_purity - sklearn_purity) < 0.2
