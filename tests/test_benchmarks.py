"""Tests for the training-level benchmarks (benchmarks/train_step.py, epoch.py, penalties.py) and the runner's table.

No timings are asserted: these check that each benchmark compares equal work. The jaxreg engine's MLP step
against the hand-written flax.linen + optax reference (same masks, so the same loss and the same Adam
update), the scanned epoch against a Python loop of single steps (same parameters), the penalty variants
against a numpy L2 formula, the CNN pair's parameter layouts against each other, and, when installed, the
PyTorch and Keras baselines against the JAX network (same forward pass with the same weights; same parameter
shapes), and the dropout pairs of benchmarks/noise.py (jaxreg and flax linen/nnx, same key, same
array). Sizes are tiny.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import conv as conv_bench
from benchmarks import epoch as epoch_bench
from benchmarks import noise as noise_bench
from benchmarks import penalties as penalty_bench
from benchmarks import train_step as step_bench
from benchmarks.__main__ import format_table, render
from benchmarks._timing import Result

SIZES = (12, 8, 8, 3)
BATCH = 4


def _kernels(params):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(params) if leaf.ndim >= 2]


@pytest.fixture(scope="module")
def mlp():
    """One jitted engine step, its first-step result and the inputs, shared (fewer XLA compilations)."""
    x, y = step_bench.mlp_data(BATCH, SIZES)
    params = step_bench.mlp_params(SIZES)
    step, tx = step_bench.jaxreg_mlp_step(SIZES)
    state, metrics = step(step_bench.jaxreg_state(params, tx), x, y)
    return {"x": x, "y": y, "params": params, "step": step, "optimizer": tx, "state": state, "metrics": metrics}


def test_format_table_marks_targets():
    rows = [
        Result("b", "c", "ours", "ref", 0.002, 0.001, 2.0, target=1.5),  # lower is better: missed
        Result("b", "c", "ours", "ref", 0.001, 0.002, 2.0, target=1.8, higher_is_better=True, note="speedup"),
        Result("b", "c", "ours", "ref", 0.001, 0.001, 1.0),
    ]
    table = format_table(rows).splitlines()
    assert table[0].startswith("| benchmark |") and len(table) == 2 + len(rows)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table[2:]]
    assert [c[7:9] for c in cells] == [["<= 1.5", "**no**"], [">= 1.8", "yes"], ["", ""]]
    assert cells[0][4:7] == ["2.000", "1.000", "2.000"] and cells[1][9] == "speedup"


@pytest.mark.parametrize("pair", ["linen", "nnx"])
def test_noise_dropout_pairs_draw_the_same_mask(pair):
    """The timed pairs do equal work: jaxreg's prng dropout and flax's (linen or nnx) give one array."""
    _, _, ours, ref = noise_bench.flax_pairs()[pair]
    x = jnp.arange(1.0, 65.0, dtype=jnp.float32).reshape(8, 8)
    for seed in range(3):
        a, b = np.asarray(ours(jax.random.key(seed), x)), np.asarray(ref(jax.random.key(seed), x))
        np.testing.assert_array_equal(a, b)
        kept = a != 0
        assert 0 < kept.sum() < a.size  # a real mask at rate 0.5, not all or nothing
        np.testing.assert_allclose(a[kept], np.asarray(x)[kept] / (1 - noise_bench.RATE))


def test_render_rebuilds_the_table_from_a_results_file(tmp_path):
    rows = [Result("b", "c", "ours", "ref", 0.002, 0.001, 2.0, target=1.5, note="n"),
            Result("b", "c", "o2", "r2", 0.001, 0.002, 2.0, target=1.8, higher_is_better=True)]
    results = tmp_path / "r.json"
    results.write_text(json.dumps({"environment": {"host": "h", "jax": "x.y"}, "quick": False,
                                   "results": [r.asdict() for r in rows], "failures": {"epoch": "boom\nOSError: z"}}))
    out = tmp_path / "RESULTS.md"
    render(results, out)
    text = out.read_text()
    assert format_table(rows) in text
    assert "Environment: jax=x.y\n" in text  # the host name is left out of the committed report
    assert "- `epoch`: OSError: z" in text


def test_mlp_flops_is_the_documented_formula():
    assert step_bench.mlp_flops(128) == 3 * 2 * 128 * (784 * 512 + 512 * 512 + 512 * 10)


def test_jaxreg_step_does_the_flax_reference_step(mlp):
    """Same masks (jr.dropout's prng path is flax's bernoulli), so the same loss and the same Adam update."""
    x, y, params, tx, state, metrics = (mlp[k] for k in ("x", "y", "params", "optimizer", "state", "metrics"))
    ref_state, ref_loss = step_bench.flax_mlp_step(SIZES)(step_bench.flax_state(params, tx), x, y, jax.random.key(1))
    # numpy reference for the penalty part: L2 * sum of squared kernels.
    l2 = step_bench.L2 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in _kernels(params))
    np.testing.assert_allclose(float(metrics["penalty"]), l2, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["loss"] + metrics["penalty"]), float(ref_loss), rtol=1e-6)
    assert jax.tree.structure(state.params) == jax.tree.structure(ref_state.params)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert int(state.step) == int(ref_state.step) == 1


def test_scanned_epoch_equals_python_loop(mlp):
    setup = epoch_bench.epoch_setup(SIZES, BATCH, num_batches=3, step=mlp["step"])
    params, tx, x, y = setup["params"], setup["optimizer"], setup["x"], setup["y"]
    scan_state, scan_metrics = setup["scan"](step_bench.jaxreg_state(params, tx), x, y, jnp.int32(0))
    loop_state, loop_metrics = setup["loop"](step_bench.jaxreg_state(params, tx), x, y, jnp.int32(0))
    assert loop_metrics["loss"].shape == (3,) and int(scan_state.step) == int(loop_state.step) == 3
    np.testing.assert_allclose(float(scan_metrics["loss"]), float(np.mean(loop_metrics["loss"])), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(scan_state.params), jax.tree.leaves(loop_state.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_penalty_variants_differ_only_in_regularization(mlp):
    variants = penalty_bench.variants(SIZES)
    assert set(penalty_bench.DESCRIPTIONS) == set(variants) - {"none"}
    assert variants["none"][1] == () and all(len(variants[n][1]) == 1 for n in ("all", "l2"))
    (step, tx), = penalty_bench.steps(SIZES, names=("all",)).values()
    state, metrics = step(step_bench.jaxreg_state(mlp["params"], tx), mlp["x"], mlp["y"])
    # Same masks and params as the default step: the same task loss and the same (numpy) L2 penalty.
    np.testing.assert_allclose(float(metrics["loss"]), float(mlp["metrics"]["loss"]), rtol=1e-6)
    l2 = step_bench.L2 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in _kernels(mlp["params"]))
    np.testing.assert_allclose(float(metrics["penalty"]), l2, rtol=1e-5)
    # max_norm keeps every kernel column within MAX_NORM (numpy norms over axis 0, Keras' MaxNorm).
    for kernel in _kernels(state.params):
        assert np.all(np.linalg.norm(kernel, axis=0) <= penalty_bench.MAX_NORM * (1 + 1e-6))


def test_cnn_pair_has_one_parameter_layout():
    """RegularizedCNN and the plain-flax FlaxCNN declare the same variables (traced only, nothing compiled)."""
    ours, ref = step_bench.cnn_models(features=(2, 4), dense_size=4)
    x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
    shapes = [jax.eval_shape(lambda x, m=m: m.init(jax.random.key(0), x, train=False), x) for m in (ours, ref)]
    layouts = [jax.tree.map(lambda a: (a.shape, a.dtype), s) for s in shapes]
    assert layouts[0] == layouts[1]
    assert sorted(shapes[0]) == ["batch_stats", "params"]


def test_torch_baseline_is_the_same_network():
    """With the JAX weights copied in and dropout off, PyTorch's forward pass equals flax.linen's."""
    pytest.importorskip("torch")
    import torch

    setup = step_bench.torch_mlp(SIZES)
    assert not isinstance(setup, str), setup
    model, step = setup
    params = step_bench.mlp_params(SIZES)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, layer in enumerate(linears):
            layer.weight.copy_(torch.from_numpy(np.asarray(params[f"Dense_{i}"]["kernel"]).T.copy()))
            layer.bias.copy_(torch.from_numpy(np.array(params[f"Dense_{i}"]["bias"])))
    x, y = step_bench.mlp_data(BATCH, SIZES)
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.array(x))).numpy()
    ref = step_bench.MLP(SIZES).apply({"params": params}, x, train=False)
    np.testing.assert_allclose(out, np.asarray(ref), rtol=1e-5, atol=1e-6)
    model.train()
    loss = step(*step_bench.torch_tensors(x, y))
    assert np.isfinite(loss.item())


def test_keras_baseline_has_the_same_parameters():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    pytest.importorskip("keras")
    with jax.numpy_dtype_promotion("standard"):
        model = step_bench.keras_mlp(SIZES)
    assert not isinstance(model, str), model
    keras_shapes = sorted(tuple(w.shape) for w in model.trainable_weights)
    jax_shapes = sorted(leaf.shape for leaf in jax.tree.leaves(step_bench.mlp_params(SIZES)))
    assert keras_shapes == jax_shapes
    assert len(model.losses) == len(SIZES) - 1  # one L2 kernel regularizer per Dense layer


# ----------------------------------------------------------------------------------------------------------
# benchmarks/conv.py: the CNN step with jaxreg's layers against the same step with flax's, and PyTorch's


def test_conv_bench_cnn_steps_do_equal_work():
    """RegularizedCNN with jrl Conv + reshape max pool and with nn.Conv + nn.max_pool: one loss, one update."""
    setup = conv_bench.cnn_steps(4, image=8, features=(2, 4), dense_size=4)
    (ours, ours_metrics), (ref, ref_metrics) = [step(state, setup["x"], setup["y"])
                                                for step, state in (setup["jaxreg"], setup["flax_layers"])]
    np.testing.assert_allclose(float(ours_metrics["loss"]), float(ref_metrics["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a third compilation of the CNN step
def test_conv_bench_eigen_convolution_step_does_the_same_work():
    """The jaxreg step compiled with the convolutions on Eigen (the compiler-option row): the same update."""
    setup = conv_bench.cnn_steps(4, image=8, features=(2, 4), dense_size=4)
    ours, ours_metrics = setup["jaxreg"][0](setup["jaxreg"][1], setup["x"], setup["y"])
    step, state, x, y = conv_bench.eigen_convolution_step(4, image=8, features=(2, 4), dense_size=4)
    eigen, eigen_metrics = step(state, x, y)
    np.testing.assert_allclose(float(eigen_metrics["loss"]), float(ours_metrics["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(eigen.params), jax.tree.leaves(ours.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cnn_max_pool_has_flax_values_and_gradient_with_ties():
    """The reshape max pool gives each window's gradient to its first maximum, as nn.max_pool does."""
    import flax.linen as nn

    from jaxreg.experiments.models import _max_pool

    x = jnp.round(jax.nn.relu(jax.random.normal(jax.random.key(0), (2, 7, 9, 3))) * 2) / 2  # many ties
    g = jax.random.normal(jax.random.key(1), (2, 3, 4, 3))
    ours, ours_vjp = jax.vjp(lambda x: _max_pool(x, 2), x)
    ref, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x)
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(ours_vjp(g)[0], ref_vjp(g)[0])


def test_torch_cnn_baseline_is_the_same_network():
    """With RegularizedCNN's weights copied in and dropout off, PyTorch's forward pass equals the JAX model's."""
    pytest.importorskip("torch")
    import torch

    features, dense, image = (2, 4), 4, 8
    setup = conv_bench.torch_cnn(features=features, dense_size=dense, image=image)
    assert not isinstance(setup, str), setup
    model, step = setup
    jax_model = conv_bench.RegularizedCNN(num_outputs=10, features=features, dense_size=dense)
    x = jax.random.normal(jax.random.key(0), (3, image, image, 3))
    params = jax_model.init(jax.random.key(1), x, train=False)["params"]
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    half = image // 2
    with torch.no_grad():
        for i, layer in enumerate(convs):  # HWIO -> OIHW
            layer.weight.copy_(torch.from_numpy(np.asarray(params[f"Conv_{i}"]["kernel"]).transpose(3, 2, 0, 1).copy()))
        # JAX flattens (h, w, c), torch (c, h, w): permute the first dense kernel's rows to match.
        k0 = np.asarray(params["Dense_0"]["kernel"]).reshape(half, half, features[1], dense).transpose(2, 0, 1, 3)
        linears[0].weight.copy_(torch.from_numpy(k0.reshape(-1, dense).T.copy()))
        linears[1].weight.copy_(torch.from_numpy(np.asarray(params["Dense_1"]["kernel"]).T.copy()))
        linears[1].bias.copy_(torch.from_numpy(np.array(params["Dense_1"]["bias"])))
        for i, norm in enumerate(norms):
            norm.weight.copy_(torch.from_numpy(np.array(params[f"BatchNorm_{i}"]["scale"])))
            norm.bias.copy_(torch.from_numpy(np.array(params[f"BatchNorm_{i}"]["bias"])))
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy()
    batch_stats = jax_model.init(jax.random.key(1), x, train=False)["batch_stats"]
    ref = jax_model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    np.testing.assert_allclose(out, np.asarray(ref), rtol=1e-4, atol=1e-5)
    model.train()
    loss = step(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()), torch.zeros(3, dtype=torch.int64))
    assert np.isfinite(loss.item())


# ----------------------------------------------------------------------------------------------------------
# benchmarks/engine_options.py: each engine option of issue 11 against the plain engine step


def test_engine_options_bench_averaging_steps_take_the_plain_update(mlp):
    """The EMA and SWA rows time the plain step's work plus the averages: one state holding both (one
    compilation) takes the plain step's update (the fixture's, same masks) and averages it by the formulas."""
    import jaxreg as jr
    from benchmarks import engine_options as options_bench

    def leaves(tree):
        return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]

    tol = {"rtol": 1e-6, "atol": 1e-8}  # two programs: XLA may fuse the shared part differently
    step, tx = options_bench.option_step("ema", SIZES)
    assert options_bench.OPTIONS["ema"].step_options == options_bench.OPTIONS["swa"].step_options == {}
    averaging = {**options_bench.OPTIONS["ema"].state_options, **options_bench.OPTIONS["swa"].state_options}
    state = jr.create_train_state(mlp["params"], tx, jax.random.key(options_bench.STATE_SEED), **averaging)
    state, metrics = step(state, mlp["x"], mlp["y"])
    np.testing.assert_allclose(float(metrics["loss"]), float(mlp["metrics"]["loss"]), rtol=1e-6)
    decay, p0, p1 = options_bench.EMA_DECAY, leaves(mlp["params"]), leaves(state.params)
    for got, want in zip(p1, leaves(mlp["state"].params)):
        np.testing.assert_allclose(got, want, **tol)
    for got, a, b in zip(leaves(state.ema_params), p0, p1):  # numpy: ema = d * ema + (1 - d) * params
        np.testing.assert_allclose(got, decay * a + (1 - decay) * b, **tol)
    assert options_bench.SWA_START == 0  # after one step the SWA average is that step's params
    for got, want in zip(leaves(state.swa_params), p1):
        np.testing.assert_allclose(got, want, **tol)


def test_engine_options_bench_mixup_step_is_the_plain_step_on_the_mixed_batch(mlp):
    """The mixup row differs from its baseline only by the hook: the hooked step equals the plain one-hot
    step on the batch the hook mixed (read back from inside the step), drawn with the hook's own key stream.

    A debug callback around the benchmark's hook records its output: compiling mixup's Beta sampler a second
    time, alone, would cost about as much as the hooked step. (The confidence row's term is checked against
    numpy in tests/test_engine_options.py.)
    """
    from benchmarks import engine_options as options_bench
    from jaxreg.train import AUGMENT_STREAM, stream_key

    seen = []

    def recorded_hook(hook_key, xb, yb):
        mixed = options_bench.mixup_hook(hook_key, xb, yb)
        jax.debug.callback(lambda k, xm, ym: seen.append((k, xm, ym)), jax.random.key_data(hook_key), *mixed)
        return mixed

    x, onehot = mlp["x"], options_bench.option_labels("mixup", mlp["y"], SIZES[-1])
    hooked, tx = options_bench.option_step("mixup", SIZES, augment=recorded_hook)
    soft, _ = options_bench.option_step("plain_soft", SIZES)
    a, ma = hooked(options_bench.option_state("mixup", mlp["params"], tx), x, onehot)
    jax.effects_barrier()
    (hook_key, x_mixed, y_mixed), = seen
    state_key = jax.random.key(options_bench.STATE_SEED)
    np.testing.assert_array_equal(hook_key, jax.random.key_data(stream_key(state_key, AUGMENT_STREAM, 0)))
    assert np.max(np.abs(x_mixed - np.asarray(x))) > 0 and np.min(np.max(y_mixed, -1)) < 1  # really mixed
    b, mb = soft(options_bench.option_state("plain_soft", mlp["params"], tx), jnp.asarray(x_mixed),
                 jnp.asarray(y_mixed))
    np.testing.assert_allclose(float(ma["loss"]), float(mb["loss"]), rtol=1e-6)
    for got, want in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-8)
