"""The engine's in-step regularizers as ``jaxreg compare`` techniques (issue 11): each a row of the table.

Reference: the ``none`` run of the same config. Weight averaging (ema, swa) changes only what is evaluated,
so its training history equals the ``none`` run's bit for bit while its test metrics differ; the
label-changing techniques train on soft labels; SAM and R-Drop change the training itself.
"""

import pytest

from jaxreg.experiments import UsageError
from jaxreg.experiments.compare import CompareConfig, run_compare
from jaxreg.experiments.techniques import parse_techniques

NEW = ("mixup", "rdrop+dropout", "ema", "swa", "sam", "activity_l2=1e-2")


@pytest.fixture(scope="module")
def runs():
    config = CompareConfig(techniques=("none", *NEW), epochs=3, hidden_sizes=(32,))
    return {run["technique"]: run for run in run_compare(config)["runs"]}


@pytest.mark.slow  # every technique trained end to end (about 30 s): make test-slow / CI
def test_every_new_technique_trains_and_reports(runs):
    for name in NEW:
        run = runs[name]
        assert 0.0 < run["test_accuracy"] <= 1.0 and run["epochs_run"] == 3, name
        assert run["settings"], name  # the recipe is recorded
    assert runs["ema"]["settings"] == {"ema": 0.99} and runs["sam"]["settings"] == {"sam": 0.05}


@pytest.mark.slow
def test_weight_averaging_changes_what_is_evaluated_not_the_training(runs):
    none = runs["none"]["history"]
    for name in ("ema", "swa"):
        assert runs[name]["history"]["train_loss"] == none["train_loss"], name
        assert runs[name]["test_loss"] != runs["none"]["test_loss"], name
    for name in ("mixup", "sam", "rdrop+dropout", "activity_l2=1e-2"):
        assert runs[name]["history"]["train_loss"] != none["train_loss"], name


@pytest.mark.parametrize("text, message", [
    ("rdrop", "combine it with dropout"),
    ("mixup+cutmix", "cannot be combined"),
    ("ema=1.5", "must be in \\(0, 1\\)"),
    ("mixup=0", "must be > 0"),
    ("drop_path=1", "must be in \\(0, 1\\)"),
])
def test_bad_technique_values_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_techniques(text)


@pytest.mark.parametrize("model, technique, message", [
    ("cnn", "activity_l2", "use --model mlp"),
    ("mlp", "drop_path", "only --model transformer"),
])
def test_techniques_on_models_without_their_layers_are_usage_errors(model, technique, message):
    with pytest.raises(UsageError, match=message):
        run_compare(CompareConfig(model=model, techniques=(technique,), epochs=1))


def test_drop_path_drops_residual_branches_of_the_transformer_only_in_training():
    """Reference: the same transformer without drop_path (dropout 0): equal in evaluation, different in
    training; one decision per example and branch (DropPath)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxreg.experiments.models import TransformerClassifier

    tokens = jnp.array([[3, 5, 3, 2], [7, 1, 2, 6], [4, 4, 1, 2]], jnp.int32)
    plain = TransformerClassifier(num_outputs=2, vocab_size=8, model_dim=8, num_heads=2, num_layers=1, mlp_dim=16,
                                  dropout_rate=0.0)
    dropped = plain.clone(drop_path_rate=0.5)
    variables = plain.init(jax.random.key(0), tokens, train=False)
    rngs = {"dropout": jax.random.key(1)}
    np.testing.assert_array_equal(plain.apply(variables, tokens, train=False),
                                  dropped.apply(variables, tokens, train=False))
    assert not np.allclose(plain.apply(variables, tokens, train=True, rngs=rngs),
                           dropped.apply(variables, tokens, train=True, rngs=rngs))
