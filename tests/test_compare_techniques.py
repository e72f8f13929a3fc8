"""The engine's in-step regularizers as ``jaxreg compare`` techniques (issue 11): each a row of the table.

Reference: the ``none`` run of the same config. Weight averaging (ema, swa) changes only what is evaluated,
so its training history equals the ``none`` run's bit for bit while its test metrics differ; the
label-changing techniques train on soft labels; SAM and R-Drop change the training itself.
"""

import pytest

from jaxreg.experiments import UsageError
from jaxreg.experiments.compare import CompareConfig, run_compare
from jaxreg.experiments.techniques import parse_techniques

NEW = ("mixup", "cutmix", "label_smoothing", "confidence", "rdrop+dropout", "ema", "swa", "sam")


@pytest.fixture(scope="module")
def runs():
    config = CompareConfig(techniques=("none", *NEW), epochs=3, hidden_sizes=(32,))
    return {run["technique"]: run for run in run_compare(config)["runs"]}


def test_every_new_technique_trains_and_reports(runs):
    for name in NEW:
        run = runs[name]
        assert 0.0 < run["test_accuracy"] <= 1.0 and run["epochs_run"] == 3, name
        assert run["settings"], name  # the recipe is recorded
    assert runs["ema"]["settings"] == {"ema": 0.99} and runs["sam"]["settings"] == {"sam": 0.05}


def test_weight_averaging_changes_what_is_evaluated_not_the_training(runs):
    none = runs["none"]["history"]
    for name in ("ema", "swa"):
        assert runs[name]["history"]["train_loss"] == none["train_loss"], name
        assert runs[name]["test_loss"] != runs["none"]["test_loss"], name
    for name in ("mixup", "label_smoothing", "sam", "rdrop+dropout"):
        assert runs[name]["history"]["train_loss"] != none["train_loss"], name


@pytest.mark.parametrize("text, message", [
    ("rdrop", "combine it with dropout"),
    ("mixup+cutmix", "cannot be combined"),
    ("ema=1.5", "must be in \\(0, 1\\)"),
    ("mixup=0", "must be > 0"),
])
def test_bad_technique_values_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse_techniques(text)
