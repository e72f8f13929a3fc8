"""Every random stream of an experiment, derived from its ``--seed`` in this one place.

A run is a pure function of its arguments: on a given machine and JAX version, equal arguments give
bitwise-identical parameters and curves, hence a byte-identical ``results.json``. The streams:

==================  ===============================================================================================
stream              derivation
==================  ===============================================================================================
initialization      :func:`init_key`: ``jax.random.key(seed, impl="rbg")``, the same for every variant of a story
training noise      :func:`train_key`: ``fold_in(jax.random.key(seed), 1)`` is the :class:`jaxreg.TrainState` key;
                    step ``k`` draws its dropout from ``fold_in(train_key, k)`` (:mod:`jaxreg.train`)
shuffling           ``jaxreg.shuffle_key(train_key, epoch)`` (:mod:`jaxreg.epoch`)
augmentation        ``fold_in(step_key, AUGMENT_STREAM)`` inside the step (:func:`augment_key`)
label noise         ``numpy.random.default_rng([seed, LABEL_NOISE_STREAM])`` (:func:`label_noise_rng`)
subsets             ``numpy.random.default_rng([seed, i])`` for split ``i`` of ``train``/``validation``/``test``
                    (:func:`subset_rng`; ``--train-size`` / ``--eval-size``)
dataset splits      :func:`jaxreg.experiments.data.split_indices`: ``default_rng(seed)`` (the stratified
                    digits/TFDS splits); :func:`dataset_rng`: ``default_rng([seed, stream])`` (synthetic sets,
                    :mod:`jaxreg.experiments.synthetic`)
k folds             ``fold_in(jax.random.key(seed), 0x666F6C64)`` shuffles the examples before the folds
                    (:mod:`jaxreg.experiments.kfold`)
==================  ===============================================================================================

Known overlap, kept so that results stay as they were: :func:`subset_rng` and :func:`dataset_rng` share
their seed sequences (``[seed, 1]`` subsets the validation split and draws the synthetic training split), so
a ``--eval-size`` subset of a synthetic set is not independent of its training split's draw. Separate them
in a change that moves results anyway.

Why ``rbg`` for initialization: with the default Threefry keys XLA compiles each truncated-normal draw's
unrolled hash, which costs more (on CPU) than compiling a small model's whole training epoch; RngBitGenerator
keys compile in a fraction of that time. Their bits are deterministic on a given machine and JAX version
(like every result here), not across backends. Training noise and shuffling use the default Threefry keys.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["AUGMENT_STREAM", "LABEL_NOISE_STREAM", "init_key", "train_key", "augment_key", "label_noise_rng",
           "subset_rng", "dataset_rng"]

AUGMENT_STREAM = 0x61756720
"""``fold_in`` data of the augmentation stream (``b"aug "``), distinct from the model's dropout stream."""

LABEL_NOISE_STREAM = 0x6E6F6973
"""Second entry of the label-noise seed sequence (``b"nois"``)."""


def init_key(seed: int) -> jax.Array:
    """The key that initializes the parameters of a run with ``seed``: ``jax.random.key(seed, impl="rbg")``.

    Example:
      >>> from jaxreg.experiments.keys import init_key
      >>> str(init_key(0).dtype)
      'key<rbg>'
    """
    return jax.random.key(seed, impl="rbg")


def train_key(seed: int) -> jax.Array:
    """The root key of a run's training noise and shuffles: ``fold_in(jax.random.key(seed), 1)``."""
    return jax.random.fold_in(jax.random.key(seed), 1)


def augment_key(step_key: jax.Array) -> jax.Array:
    """The key that augments a training batch, from the step's noise key: ``fold_in(step_key, AUGMENT_STREAM)``."""
    return jax.random.fold_in(step_key, AUGMENT_STREAM)


def label_noise_rng(seed: int) -> np.random.Generator:
    """The generator that picks and replaces noisy training labels (``--label-noise``)."""
    return np.random.default_rng([seed, LABEL_NOISE_STREAM])


def dataset_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of a synthetic dataset's ``stream``: 0 for what the splits share, ``1 + i`` for split ``i``."""
    return np.random.default_rng([seed, stream])


def subset_rng(seed: int, split_index: int) -> np.random.Generator:
    """The generator that draws the ``--train-size``/``--eval-size`` subset of split ``split_index``."""
    return np.random.default_rng([seed, split_index])
