"""``jaxreg.flax.linen.BatchNorm`` and ``jaxreg.flax.nnx.BatchNorm`` against flax's own, argument by argument.

References: flax's ``BatchNorm`` tests (ported with their inputs and assertions, jaxreg's class swapped in;
each test names its source), and ``flax.linen.BatchNorm`` / ``flax.nnx.BatchNorm`` themselves over a grid of
their arguments: outputs, updated statistics, evaluation outputs and gradients from the same variables.

Tolerances (``rtol`` and ``atol`` alike): 1e-5 for float32 and complex64 outputs, statistics and
gradients; 2e-2 (a few bfloat16 ulps) for every array of a case that involves bfloat16 (input, ``dtype``
or ``param_dtype``): a float32 gradient of a bfloat16 computation carries bfloat16 rounding. flax's modules
run under JAX's standard dtype promotion, which their code assumes; jaxreg's under the suite's strict one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxreg.flax import linen as jrl
from jaxreg.flax import nnx as jrn

standard = jax.numpy_dtype_promotion("standard")


def _close(a, b, tol: float = 1e-5) -> None:
    # In numpy: an eager jax op per new shape and dtype would compile a program each.
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    wide = np.complex64 if np.iscomplexobj(a) else np.float32
    np.testing.assert_allclose(a.astype(wide), b.astype(wide), rtol=tol, atol=tol)


def _loss(y: jax.Array, w: jax.Array) -> jax.Array:
    """A real scalar that weights every output differently (strict-promotion safe, complex included)."""
    wide = jnp.complex64 if jnp.iscomplexobj(y) else jnp.float32
    return jnp.sum(jnp.real(y.astype(wide) * w.astype(wide)))


def _input(shape, kind: str, seed: int = 0) -> jax.Array:
    """N(1, 2^2) values (an imaginary part N(-0.5, 1) for complex64), drawn in numpy."""
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, shape)
    if kind == "complex64":
        x = x + 1j * rng.normal(-0.5, 1.0, shape)
    return jnp.asarray(x.astype(kind))


def _perturbed(tree, key: jax.Array):
    """Non-trivial values (var, scale > 0), each leaf in its own dtype; a function of the tree's structure,
    names, shapes and dtypes only, so equal trees get equal values."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    drawn = []
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path)
        low, high = (0.5, 2.0) if "var" in name or "scale" in name else (-1.0, 1.0)
        key_i = jax.random.fold_in(key, ["mean", "var", "scale", "bias"].index(name.split("'")[-2]))
        drawn.append(jax.random.uniform(key_i, leaf.shape, jnp.float32, low, high).astype(leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, drawn)


def _same(a, b) -> None:
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------
# The grid. Each case: input shape, input dtype, constructor arguments, and whether a mask is passed.

CASES = {
    "axis=-1": ((8, 3), "float32", {}, False),
    "axis=1 (NCHW), momentum, epsilon": ((4, 3, 2, 2), "float32", dict(axis=1, momentum=0.5, epsilon=1e-2), False),
    "axis=(1, 2), use_scale=False": ((4, 3, 5, 2), "float32", dict(axis=(1, 2), use_scale=False), False),
    "axis=(1, 3) not adjacent, use_bias=False": ((4, 3, 2, 5), "float32", dict(axis=(1, 3), use_bias=False), False),
    "dtype=bfloat16": ((8, 3), "float32", dict(dtype=jnp.bfloat16), False),
    "bfloat16 input": ((8, 3), "bfloat16", {}, False),
    "param_dtype=bfloat16": ((8, 3), "bfloat16", dict(param_dtype=jnp.bfloat16), False),
    "use_fast_variance=False, use_bias=False": (
        (8, 3), "float32", dict(use_fast_variance=False, use_bias=False), False),
    "mask, axis=(1, 2)": ((4, 3, 5, 2), "float32", dict(axis=(1, 2)), True),
    "complex64": ((8, 3), "complex64", {}, False),
    "complex64, mask, use_fast_variance=False": ((8, 3), "complex64", dict(use_fast_variance=False), True),
}
LINEN_ONLY = {
    "force_float32_reductions=False": (
        (8, 3), "bfloat16", dict(force_float32_reductions=False, param_dtype=jnp.bfloat16), False,
    ),
}


def _case_tolerance(kind: str, kw: dict) -> float:
    return 2e-2 if jnp.bfloat16 in (jnp.dtype(kind), kw.get("dtype"), kw.get("param_dtype")) else 1e-5


def _mask(shape) -> jax.Array:
    # Per example, broadcast over the other axes; the first two examples are always kept.
    keep = np.random.default_rng(9).random((shape[0],) + (1,) * (len(shape) - 1)) < 0.6
    keep[:2] = True
    return jnp.asarray(keep)


# Each case is one compiled program holding jaxreg's module and flax's, both static arguments, flax's traced
# under standard promotion. XLA's backend optimization level 0: LLVM's passes take about 3x longer than the
# rest on these tiny programs, and leave the IEEE arithmetic compared here unchanged (CPU fast-math is off).
_compiled = functools.partial(jax.jit, static_argnums=(0, 1), compiler_options={"xla_backend_optimization_level": 0})


def _linen_run(module, variables, x, w, mask):
    """Training output, updated batch_stats and gradients (params, x); then the evaluation output."""

    def train(params, x):
        y, updates = module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x,
            use_running_average=False, mask=mask, mutable=["batch_stats"],
        )
        return _loss(y, w), (y, updates["batch_stats"])

    (_, (y, stats)), grads = jax.value_and_grad(train, argnums=(0, 1), has_aux=True)(variables["params"], x)
    y_eval = module.apply({"params": variables["params"], "batch_stats": stats}, x, use_running_average=True)
    return y, stats, grads, y_eval


def _linen_case(module, x, w, mask):
    """``module.init``'s variables, and ``_linen_run`` from perturbed ones."""
    initial = module.init(jax.random.key(2), x, use_running_average=False, mask=mask)
    return initial, _linen_run(module, _perturbed(initial, jax.random.key(3)), x, w, mask)


@_compiled
def _linen_pair(ours, theirs, x, w, mask):
    out_ours = _linen_case(ours, x, w, mask)
    with standard:
        return out_ours, _linen_case(theirs, x, w, mask)


@pytest.mark.parametrize("case", [*CASES, *LINEN_ONLY])
def test_linen_matches_flax_linen_over_the_argument_grid(case):
    """Reference: flax.linen.BatchNorm with the same arguments and variables (init tree and values too)."""
    shape, kind, kw, masked = {**CASES, **LINEN_ONLY}[case]
    mask = _mask(shape) if masked else None
    (v_ours, ours), (v_theirs, theirs) = _linen_pair(
        jrl.BatchNorm(**kw), nn.BatchNorm(**kw), _input(shape, kind), _input(shape, "float32", seed=1), mask
    )
    assert jax.tree.structure(v_ours) == jax.tree.structure(v_theirs)
    jax.tree.map(_same, v_ours, v_theirs)  # so the perturbed variables are the same too
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    jax.tree.map(functools.partial(_close, tol=_case_tolerance(kind, kw)), ours, theirs)


def _nnx_run(graphdef, params, stats, x, w, mask):
    """As _linen_run, for an nnx module split into (graphdef, params, stats), after perturbing them."""
    params, stats = _perturbed((params, stats), jax.random.key(3))

    def train(params, x):
        # Variables rebuilt inside the trace that mutates them (nnx refuses a mutation across trace levels).
        model = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, stats))
        y = model(x, use_running_average=False, mask=mask)
        return _loss(y, w), (y, nnx.state(model, nnx.BatchStat))

    (_, (y, new_stats)), grads = jax.value_and_grad(train, argnums=(0, 1), has_aux=True)(params, x)
    y_eval = nnx.merge(graphdef, params, new_stats)(x, use_running_average=True)
    return y, new_stats, grads, y_eval


@_compiled
def _nnx_pair_run(graphdef_ours, graphdef_theirs, state_ours, state_theirs, x, w, mask):
    out_ours = _nnx_run(graphdef_ours, *state_ours, x, w, mask)
    with standard, warnings.catch_warnings():
        # nnx casts a complex batch mean into its float32 running mean inside a scatter, which warns.
        warnings.filterwarnings("ignore", "scatter inputs have incompatible types", FutureWarning)
        warnings.filterwarnings("ignore", "Casting complex values to real", np.exceptions.ComplexWarning)
        return out_ours, _nnx_run(graphdef_theirs, *state_theirs, x, w, mask)


def _nnx_pair(kw, features):
    ours = jrn.BatchNorm(features, rngs=nnx.Rngs(0), **kw)
    theirs = nnx.BatchNorm(features, rngs=nnx.Rngs(0), **kw)
    return ours, theirs


NNX_CASES = {k: v for k, v in CASES.items() if not isinstance(v[2].get("axis", 0), tuple)}


@pytest.mark.parametrize("case", list(NNX_CASES))
def test_nnx_matches_flax_nnx_over_the_argument_grid(case):
    """Reference: nnx.BatchNorm with the same arguments and state."""
    shape, kind, kw, masked = NNX_CASES[case]
    mask = _mask(shape) if masked else None
    ours, theirs = _nnx_pair(kw, shape[kw.get("axis", -1)])
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))
    jax.tree.map(_same, nnx.state(ours), nnx.state(theirs))  # so the perturbed states are the same too
    (g_ours, *s_ours), (g_theirs, *s_theirs) = nnx.split(ours, nnx.Param, ...), nnx.split(theirs, nnx.Param, ...)
    out_ours, out_theirs = _nnx_pair_run(
        g_ours, g_theirs, s_ours, s_theirs, _input(shape, kind), _input(shape, "float32", seed=1), mask
    )
    assert jax.tree.structure(out_ours) == jax.tree.structure(out_theirs)
    jax.tree.map(functools.partial(_close, tol=_case_tolerance(kind, kw)), out_ours, out_theirs)


@_compiled
def _nnx_tuple_axis_run(graphdefs, linen_module, states, x, w, mask):
    """Ours as _nnx_run; flax linen's _linen_case outputs; and both nnx modules' evaluation output from the
    perturbed state (a perturbation draws the same values for (C1 * C2,) as for (C1, C2))."""
    (g_ours, g_theirs), (s_ours, s_theirs) = graphdefs, states
    out = _nnx_run(g_ours, *s_ours, x, w, mask)
    evals = [nnx.merge(g, *_perturbed(tuple(s), jax.random.key(3)))(x, use_running_average=True)
             for g, s in ((g_ours, s_ours), (g_theirs, s_theirs))]
    with standard:
        return out, _linen_case(linen_module, x, w, mask)[1], evals


@pytest.mark.parametrize("case", ["axis=(1, 3) not adjacent, use_bias=False", "mask, axis=(1, 2)"])
def test_nnx_tuple_axis_matches_flax_linen_and_nnx_eval(case):
    """Reference: flax.linen.BatchNorm with the same tuple axis, its (C1, C2) variables flattened to nnx's
    (C1 * C2,) state; in evaluation also nnx.BatchNorm itself (it fails to broadcast in training)."""
    shape, kind, kw, masked = CASES[case]
    mask = _mask(shape) if masked else None
    features = int(np.prod([shape[a] for a in kw["axis"]]))
    (g_ours, *s_ours), (g_theirs, *s_theirs) = [nnx.split(m, nnx.Param, ...) for m in _nnx_pair(kw, features)]
    ours, reference, (eval_ours, eval_theirs) = _nnx_tuple_axis_run(
        (g_ours, g_theirs), nn.BatchNorm(**kw), (s_ours, s_theirs), _input(shape, kind),
        _input(shape, "float32", seed=1), mask,
    )
    (y, stats, (g_params, g_x), y_eval), (y_ref, stats_ref, (g_params_ref, g_x_ref), y_eval_ref) = ours, reference
    flat = lambda tree: jax.tree.map(lambda a: a.reshape(features), tree)  # noqa: E731
    jax.tree.map(_close, (y, g_x, y_eval, eval_ours), (y_ref, g_x_ref, y_eval_ref, eval_theirs))
    jax.tree.map(_close, (nnx.to_pure_dict(stats), nnx.to_pure_dict(g_params)), (flat(stats_ref), flat(g_params_ref)))
    with pytest.raises(ValueError, match="num_features"):
        jrn.BatchNorm(shape[kw["axis"][0]], axis=kw["axis"], rngs=nnx.Rngs(0))(jnp.zeros(shape))


def test_axis_index_groups_under_pmap_match_flax():
    """Reference: flax.linen.BatchNorm and nnx.BatchNorm with axis_name and axis_index_groups under pmap (one
    device: one group of one member, which exercises the argument's plumbing into lax.pmean)."""
    x = _input((1, 8, 3), "float32")
    kw = dict(axis_name="device", axis_index_groups=[[0]], use_running_average=False)
    variables = _perturbed(nn.BatchNorm(**kw).init(jax.random.key(0), x[0]), jax.random.key(1))

    def linen(module):
        return jax.pmap(lambda xi: module.apply(variables, xi, mutable=["batch_stats"]), axis_name="device")(x)

    jax.tree.map(_close, linen(jrl.BatchNorm(**kw)), linen(nn.BatchNorm(**kw)))

    def nnx_run(cls):
        model = cls(3, rngs=nnx.Rngs(0), **kw)
        graphdef, state = nnx.split(model)

        def step(xi):
            m = nnx.merge(graphdef, jax.tree.map(lambda a: a, state))
            return m(xi), nnx.state(m, nnx.BatchStat)

        return jax.pmap(step, axis_name="device")(x)

    jax.tree.map(_close, nnx_run(jrn.BatchNorm), nnx_run(nnx.BatchNorm))


# ----------------------------------------------------------------------------------------------------------
# The signatures: every flax argument, with flax's default


def _same_default(ours, theirs) -> bool:
    if ours is theirs or ours == theirs:
        return True
    # Initializers: nnx builds a fresh closure per default (zeros_init()), so compare what they draw.
    key = jax.random.key(0)
    return bool(np.array_equal(ours(key, (3,), jnp.float32), theirs(key, (3,), jnp.float32)))


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (jrl.BatchNorm, nn.BatchNorm),
        (jrl.BatchNorm.__call__, nn.BatchNorm.__call__),
        (jrn.BatchNorm.__init__, nnx.BatchNorm.__init__),
        (jrn.BatchNorm.__call__, nnx.BatchNorm.__call__),
    ],
)
def test_signature_takes_every_flax_argument_with_its_default(ours, theirs):
    """Reference: inspect.signature of the installed flax's BatchNorm: same names, kinds and defaults, in
    flax's order (jaxreg's ghost_batch_size may follow)."""
    p_ours, p_theirs = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    in_order = [n for n in p_theirs if n not in ("parent", "name")]  # linen appends these two to any module
    assert list(p_ours)[: len(in_order)] == in_order
    for name, param in p_theirs.items():
        assert p_ours[name].kind == param.kind, name
        assert _same_default(p_ours[name].default, param.default), name
    flax_fields = [f.name for f in dataclasses.fields(nn.BatchNorm) if f.name not in ("parent", "name")]
    assert [f.name for f in dataclasses.fields(jrl.BatchNorm)][: len(flax_fields)] == flax_fields


# ----------------------------------------------------------------------------------------------------------
# What is not covered raises, naming the argument


def test_arguments_jaxreg_cannot_combine_or_flax_lacks_raise_naming_them(monkeypatch):
    """ghost_batch_size with an option run by flax's helpers, or with the batch axis as a feature axis; bad
    hyperparameters on every path; and an option whose flax helper the installed flax lacks."""
    x = _input((8, 3, 2), "float32")
    mask = _mask(x.shape)

    def linen(x, mask=None, **kw):
        return jrl.BatchNorm(use_running_average=False, **kw).init(jax.random.key(0), x, mask=mask)

    def nnx_call(x, mask=None, features=3, **kw):
        return jrn.BatchNorm(features, axis=1, rngs=nnx.Rngs(0), **kw)(x, mask=mask)

    for call in (linen, nnx_call):
        extra = {} if call is nnx_call else dict(axis=1)
        with pytest.raises(ValueError, match="ghost_batch_size cannot be combined with mask"):
            call(x, mask, ghost_batch_size=4, **extra)
        with pytest.raises(ValueError, match="ghost_batch_size cannot be combined with use_fast_variance=False"):
            call(x, ghost_batch_size=4, use_fast_variance=False, **extra)
        with pytest.raises(ValueError, match="ghost_batch_size cannot be combined with a complex input"):
            call(_input(x.shape, "complex64"), ghost_batch_size=4, **extra)
        with pytest.raises(ValueError, match="momentum"):
            call(x, mask, momentum=1.5, **extra)  # the flax-helper path checks too
        with pytest.raises(ValueError, match="epsilon"):
            call(x, epsilon=0.0, **extra)
    with pytest.raises(ValueError, match="axis cannot include 0"):
        linen(x, axis=(0, 2), ghost_batch_size=4)
    with pytest.raises(ValueError, match=r"axis must be in the range \[-3, 3\)"):
        linen(x, axis=(1, 3))
    with pytest.raises(ValueError, match="num_features = 4"):
        nnx_call(x, features=4)

    monkeypatch.delattr(flax.linen.normalization, "_compute_stats")
    monkeypatch.delattr(flax.nnx.nn.normalization, "_compute_stats")
    with pytest.raises(NotImplementedError, match="mask: jaxreg's BatchNorm runs these with flax's own"):
        linen(x, mask, axis=1)
    with pytest.raises(NotImplementedError, match="use_fast_variance=False"):
        nnx_call(x, use_fast_variance=False)
    linen(x, axis=1), nnx_call(x)  # the core path needs no flax helper


# ----------------------------------------------------------------------------------------------------------
# flax's own BatchNorm tests, jaxreg's class swapped in


@pytest.mark.parametrize("test_mask", [True, False])
@pytest.mark.parametrize("complex_input", [False, True])
def test_flax_linen_test_batch_norm(test_mask, complex_input):
    """Port of flax tests/linen/linen_test.py NormalizationTest.test_batch_norm and test_batch_norm_complex
    (same inputs, assertions and tolerances; nn.BatchNorm -> jrl.BatchNorm)."""
    rng = jax.random.key(0)
    key1, key2, key3 = jax.random.split(rng, 3)
    dtype = jnp.complex64 if complex_input else jnp.float32
    x = jax.random.normal(key1, (4, 3, 2), dtype=dtype)
    if test_mask:
        m = jax.random.randint(key2, (4, 3, 1), minval=0, maxval=2, dtype=jnp.int32).astype(jnp.bool_)
        x = jnp.where(m, x, jnp.ones_like(x) * jnp.nan)
    else:
        m = None
    kw = dict(dtype=jnp.complex64) if complex_input else {}
    model_cls = jrl.BatchNorm(momentum=0.9, use_running_average=False, **kw)
    y, initial_params = model_cls.init_with_output(key3, x, mask=m)

    mean = y.mean((0, 1), where=m)
    var = y.var((0, 1), where=m)
    np.testing.assert_allclose(mean, np.array([0.0, 0.0]), atol=1e-4)
    np.testing.assert_allclose(var, np.array([1.0, 1.0]), rtol=1e-4)
    if complex_input:
        assert mean.dtype == jnp.complex64
    _, vars_out = model_cls.apply(initial_params, x, mutable=["batch_stats"], mask=m)

    ema = vars_out["batch_stats"]
    np.testing.assert_allclose(ema["mean"], 0.1 * x.mean((0, 1), keepdims=False, where=m), atol=1e-4)
    with standard:  # 0.9 + a float32 variance of a complex input: flax's test relies on standard promotion
        np.testing.assert_allclose(ema["var"], 0.9 + 0.1 * x.var((0, 1), keepdims=False, where=m), rtol=1e-4)


def test_flax_linen_test_batch_norm_multi_init():
    """Port of flax tests/linen/linen_test.py NormalizationTest.test_batch_norm_multi_init: axis_name is
    ignored while initializing, even when the layer is called twice."""

    class Foo(nn.Module):
        @nn.compact
        def __call__(self, x):
            norm = jrl.BatchNorm(name="norm", use_running_average=False, axis_name="batch")
            x = norm(x)
            return x, norm(x)

    key = jax.random.key(0)
    model = Foo()
    x = jax.random.normal(jax.random.key(1), (2, 4))
    (y1, y2), _ = model.init_with_output(key, x)
    np.testing.assert_allclose(y1, y2, rtol=0.005)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16])
@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.float16])
@pytest.mark.parametrize("use_fast_variance", [True, False])
@pytest.mark.parametrize("mask", [None, np.array([True, False, True, False, True])])
def test_flax_nnx_linen_batchnorm_equivalence(dtype, param_dtype, use_fast_variance, mask):
    """Port of flax tests/nnx/nn/normalization_test.py TestLinenConsistency.test_nnx_linen_batchnorm_equivalence
    (nnx.BatchNorm -> jrn.BatchNorm, linen.BatchNorm -> jrl.BatchNorm; the same bit-for-bit assertions). Run
    under standard promotion, as flax's suite: its Dense/Linear layers mix float16 and float32."""

    class NNXModel(nnx.Module):
        def __init__(self, dtype, param_dtype, use_fast_variance, rngs):
            self.norm_layer = jrn.BatchNorm(
                5, use_running_average=False, dtype=dtype, param_dtype=param_dtype,
                use_fast_variance=use_fast_variance,
                promote_dtype=lambda x, **kwargs: x,  # ensure same behavior as Linen
                rngs=rngs,
            )
            self.linear = nnx.Linear(5, 4, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

        def __call__(self, x, *, mask=None):
            return self.linear(self.norm_layer(x, mask=mask))

    class LinenModel(nn.Module):
        dtype: jnp.dtype | None = None
        param_dtype: jnp.dtype = jnp.float32
        use_fast_variance: bool = True

        def setup(self):
            self.norm_layer = jrl.BatchNorm(
                use_running_average=False, dtype=self.dtype, param_dtype=self.param_dtype,
                use_fast_variance=use_fast_variance,
            )
            self.linear = nn.Dense(4, dtype=self.dtype, param_dtype=self.param_dtype)

        def __call__(self, x, *, mask=None):
            return self.linear(self.norm_layer(x, mask=mask))

    with standard:
        rngs = nnx.Rngs(42)
        x = jax.random.normal(jax.random.key(0), (10, 5))
        linen_model = LinenModel(dtype=dtype, param_dtype=param_dtype, use_fast_variance=use_fast_variance)
        variables: dict = linen_model.init(jax.random.key(1), x)
        nnx_model = NNXModel(dtype=dtype, param_dtype=param_dtype, use_fast_variance=use_fast_variance, rngs=rngs)
        nnx_model.linear.kernel[...] = variables["params"]["linear"]["kernel"]
        nnx_model.linear.bias[...] = variables["params"]["linear"]["bias"]
        linen_out, updates = linen_model.apply(variables, x, mask=mask, mutable=["batch_stats"])
        variables.update(updates)
        nnx_out = nnx_model(x, mask=mask)
    np.testing.assert_array_equal(linen_out, nnx_out)
    np.testing.assert_array_equal(variables["params"]["norm_layer"]["scale"], nnx_model.norm_layer.scale[...])
    np.testing.assert_array_equal(variables["params"]["norm_layer"]["bias"], nnx_model.norm_layer.bias[...])
    np.testing.assert_array_equal(variables["batch_stats"]["norm_layer"]["mean"], nnx_model.norm_layer.mean[...])
    np.testing.assert_array_equal(variables["batch_stats"]["norm_layer"]["var"], nnx_model.norm_layer.var[...])
