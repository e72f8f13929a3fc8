"""The vision regularizers as ``jaxreg compare`` techniques (issue 12): drop_block, random_erasing, rand_augment,
trivial_augment on the CNN.

The image techniques run in the engine's ``augment=`` hook, before the label techniques; DropBlock is a layer
of the CNN. Reference for the hook: the library functions called by hand with the hook's key split.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxreg as jr
from jaxreg.experiments import UsageError
from jaxreg.experiments import models as _models
from jaxreg.experiments.compare import CompareConfig, run_compare
from jaxreg.experiments.technique_programs import _augment_hook, _model_options
from jaxreg.experiments.techniques import Recipe, parse_techniques

# One compiled program (~10-20 s of compilation on two cores) runs three of the techniques together with mixup's
# soft labels; trivial_augment shares rand_augment's ops and is checked through the hook below.
RUN = "drop_block+random_erasing+rand_augment+mixup"


@pytest.mark.slow  # the CNN trained end to end per technique (about 20 s): make test-slow / CI
def test_the_vision_techniques_train_the_cnn_in_compare():
    run = run_compare(CompareConfig(model="cnn", techniques=(RUN,), epochs=2))["runs"][0]
    assert run["epochs_run"] == 2 and 0.1 < run["test_accuracy"] <= 1.0
    assert np.isfinite(run["train_loss"]) and run["skipped_steps"] == 0
    assert run["settings"] == {"mixup": 0.2, "drop_block": 0.1, "random_erasing": 0.5, "rand_augment": 9}
    assert len(run["history"]["train_loss"]) == 2


def test_parse_defaults_and_values():
    parsed = dict(parse_techniques("drop_block, random_erasing=0.25, rand_augment=5, trivial_augment"))
    assert parsed["drop_block"] == Recipe(drop_block=0.1)
    assert parsed["random_erasing=0.25"] == Recipe(random_erasing=0.25)
    assert parsed["rand_augment=5"] == Recipe(rand_augment=5)
    assert parsed["trivial_augment"] == Recipe(trivial_augment=True)
    assert dict(parse_techniques("augmix, augmix=1"))["augmix"] == Recipe(augmix=12.0)  # the paper's lambda


@pytest.mark.parametrize("text, message", [
    ("drop_block=1", "must be in \\(0, 1\\)"),
    ("random_erasing=0", "must be in \\(0, 1\\]"),
    ("random_erasing=1.5", "must be in \\(0, 1\\]"),
    ("rand_augment=0", "integer bin in 1..30"),
    ("rand_augment=31", "integer bin in 1..30"),
    ("rand_augment=2.5", "integer bin in 1..30"),
    ("trivial_augment=3", "takes no value"),
    ("rand_augment+trivial_augment", "use one"),
])
def test_bad_values_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_techniques(text)


@pytest.mark.parametrize("options, message", [
    ({"techniques": ("drop_block",)}, "the mlp model has none, use --model cnn"),
    ({"model": "transformer", "techniques": ("drop_block",)}, "use --model cnn"),
    ({"dataset": "synthetic_sequences", "techniques": ("random_erasing",)}, "random_erasing needs images"),
    ({"dataset": "synthetic_sequences", "techniques": ("rand_augment",)}, "rand_augment needs images"),
    ({"dataset": "synthetic_sequences", "techniques": ("trivial_augment",)}, "trivial_augment needs images"),
    ({"dataset": "synthetic_sequences", "model": "cnn", "techniques": ("drop_block",)}, "needs images"),
    ({"dataset": "synthetic_sequences", "techniques": ("augmix",)}, "augmix needs images"),
    ({"model": "cnn", "techniques": ("augmix+dropout+rdrop",)}, "cannot be combined with rdrop"),
])
def test_combinations_that_cannot_work_are_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        run_compare(CompareConfig(**options, epochs=1))


def _digits_like(n=8):
    return jax.random.uniform(jax.random.key(3), (n, 8, 8, 1)), jnp.arange(n, dtype=jnp.int32) % 10


def test_hook_applies_the_image_ops_then_the_label_ops():
    x, y = _digits_like()
    key = jax.random.key(7)
    hook = _augment_hook(Recipe(random_erasing=1.0, mixup=0.2), 10)
    out_x, out_y = hook(key, x, y)
    image_key, label_key = jax.random.split(key)
    (erasing_key,) = jax.random.split(image_key, 1)  # one key per image op
    erased = jr.random_erasing(erasing_key, x, probability=1.0)
    want_x, want_y = jr.mixup(label_key, erased, jax.nn.one_hot(y, 10, dtype=jnp.float32), 0.2)
    np.testing.assert_array_equal(out_x, want_x)
    np.testing.assert_array_equal(out_y, want_y)


def test_policy_hook_runs_the_policy_then_erasing_and_keeps_the_labels():
    x, y = _digits_like()
    key = jax.random.key(1)
    out_x, out_y = _augment_hook(Recipe(trivial_augment=True, random_erasing=0.5), 10)(key, x, y)
    policy_key, erasing_key = jax.random.split(jax.random.split(key)[0])
    want = jr.random_erasing(erasing_key, jr.trivial_augment(policy_key, x), probability=0.5)
    np.testing.assert_array_equal(out_x, want)
    assert out_y is y  # no label op: integer labels, the task's loss


def test_label_ops_alone_keep_the_whole_key():
    # Runs without an image op are unchanged by the image hook's existence (same bits as before issue 12).
    x, y = _digits_like()
    key = jax.random.key(2)
    out_x, _ = _augment_hook(Recipe(cutmix=1.0), 10)(key, x, y)
    np.testing.assert_array_equal(out_x, jr.cutmix(key, x, jax.nn.one_hot(y, 10), 1.0)[0])


def test_drop_block_is_a_layer_after_each_conv_block():
    options = _model_options(Recipe(drop_block=0.2), "cnn")
    assert options["drop_block_rate"] == 0.2 and options["drop_block_size"] == 3
    small = {"num_outputs": 10, "features": (4, 4), "dense_size": 8}
    model = _models.build_model("cnn", **small, **options)
    plain = _models.build_model("cnn", **small, **_model_options(Recipe(), "cnn"))
    x, _ = _digits_like(4)
    variables = jax.eval_shape(lambda: plain.init(jax.random.key(0), x, train=False))
    assert jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False)) == variables  # no new variables

    def drop_block_calls(module, train):
        # Traced, not compiled: the program's calls of jr.drop_block's jitted kernel (its numerics are
        # tests/test_drop_block.py's).
        apply = lambda v: module.apply(v, x, train=train, rngs={"dropout": jax.random.key(1)})  # noqa: E731
        return str(jax.make_jaxpr(apply)(variables)).count("name=_drop_block")

    assert drop_block_calls(model, train=True) == 2  # after each of the two convolution blocks
    assert drop_block_calls(model, train=False) == 0 and drop_block_calls(plain, train=True) == 0


def test_augmix_technique_is_the_engines_consistency_with_two_augmix_views(monkeypatch):
    """Reference: jr.augmix_views(2) and the coefficient, as make_train_step(consistency=) takes them."""
    from jaxreg.experiments import technique_programs

    monkeypatch.setattr(technique_programs, "augmix_views", lambda num_views: ("augmix_views", num_views))
    views, coefficient = technique_programs._step_options(Recipe(augmix=12.0), 10)["consistency"]
    assert views == ("augmix_views", 2) and coefficient == 12.0
    assert "consistency" not in technique_programs._step_options(Recipe(), 10)
