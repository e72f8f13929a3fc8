"""The light core: ``pip install jaxreg`` (no extras) trains a model; the lab names the extra it needs.

Builds a fresh virtual environment from this checkout without any extra (from the package index, as a new
user would), so it is slow (about half a minute) and marked so; ``make test-slow`` and CI run it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE_SCRIPT = textwrap.dedent('''
    import importlib.util
    import jax, jax.numpy as jnp, numpy as np, optax
    import jaxreg as jr

    present = [m for m in ("tensorflow_datasets", "matplotlib", "sklearn", "tqdm") if importlib.util.find_spec(m)]
    assert not present, f"the core install pulled in {present}"
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 0.5, 0.0], np.float32) > 0).astype(np.int32)
    assert jr.dropout(jax.random.key(0), jnp.ones((2, 3)), 0.5).shape == (2, 3)
    bn_params, bn_state = jr.batch_norm_init(4)
    out, bn_state = jr.batch_norm(jnp.asarray(x), bn_params, bn_state, training=True)
    assert out.shape == x.shape
    assert float(jr.l2({"w": jnp.ones(3)})) == 3.0

    def apply_fn(params, model_state, x, *, key, training):
        return x @ params["w"], model_state

    tx = optax.sgd(0.5)
    loss = optax.softmax_cross_entropy_with_integer_labels
    state = jr.create_train_state({"w": jnp.zeros((4, 2))}, tx, jax.random.key(0))
    state, history = jr.fit(state, jr.make_train_step(apply_fn, loss, tx), (x, y), epochs=5, batch_size=16,
                            val_data=(x, y), eval_step=jr.make_eval_step(apply_fn, loss), progress=True,
                            early_stopping=jr.EarlyStopping(patience=2))
    assert history["val_accuracy"][-1] > 0.7, history["val_accuracy"]
    for module in ("jaxreg.experiments.data", "jaxreg.experiments.plots", "jaxreg.experiments.compare"):
        try:
            __import__(module)
        except ImportError as err:
            assert "pip install 'jaxreg[" in str(err), err
        else:
            raise AssertionError(f"{module} imported without its extras")
    print("core ok")
''')


def test_import_jaxreg_loads_no_optional_dependency():
    """``import jaxreg`` and a jr.fit-ready namespace load none of the lab's dependencies, nor the adapters."""
    code = ("import sys, jaxreg as jr; jr.fit, jr.fit_members, jr.kfold_fit, jr.Penalty; "
            "print(sorted(m for m in ('matplotlib', 'tensorflow_datasets', 'sklearn', 'tqdm', 'orbax', "
            "'jaxreg.experiments', 'jaxreg.flax', 'jaxreg.checkpoint') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_public_names_resolve_and_lazy_names_load_on_use():
    import jaxreg as jr

    assert len(set(jr.__all__)) == len(jr.__all__)
    for name in jr.__all__:
        assert getattr(jr, name) is not None, name
    assert jr.linen_apply.__module__ == "jaxreg.flax.linen" and jr.nnx_apply.__module__ == "jaxreg.flax.nnx"
    assert jr.data.__name__ == "jaxreg.experiments.data" and jr.plots.__name__ == "jaxreg.experiments.plots"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jr.nope  # noqa: B018


@pytest.mark.parametrize("blocked, importable, refused", [
    ("matplotlib", "jaxreg.experiments.data", "jaxreg.experiments.plots"),       # jaxreg[data] alone
    ("sklearn", "jaxreg.experiments.plots", "jaxreg.experiments.data"),          # jaxreg[plots] alone
])
def test_each_lab_extra_works_alone(blocked, importable, refused):
    """With one extra's package made unimportable, the other extra's module imports; the blocked one names its extra."""
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            f"import {importable}\n"
            f"try:\n    import {refused}\nexcept ImportError as err:\n    print(err)\n"
            f"else:\n    raise SystemExit('{refused} imported without {blocked}')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "pip install 'jaxreg[" in out.stdout, out.stdout


def test_require_names_the_extra():
    from jaxreg._optional import require

    with pytest.raises(ImportError, match=r"needs no-such-dist, which is not installed: pip install 'jaxreg\[data\]'"):
        require("no-such-dist", extra="data", user="this test")


@pytest.mark.slow
def test_core_install_has_no_lab_dependencies_and_trains(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is needed to copy the tracked files")
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # --no-compile: byte-compiling every installed package is most of the CPU time and tests nothing here.
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              "--no-compile", str(source)], capture_output=True, text=True, env=env, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]

    core = subprocess.run([str(python), "-c", CORE_SCRIPT], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert core.returncode == 0, core.stdout + core.stderr[-3000:]
    assert "core ok" in core.stdout

    # The command of the lab exits with one line naming the extra, not a traceback.
    cli = subprocess.run([str(venv / "bin" / "jaxreg"), "compare"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert cli.returncode == 1, cli.stderr
    assert cli.stderr.strip().count("\n") == 0 and "pip install 'jaxreg[" in cli.stderr, cli.stderr
