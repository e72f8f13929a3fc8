"""The unsupervised contrast: k-means on the digits in JAX (no labels, no regularizer), checked against
scikit-learn's KMeans.

Lloyd's algorithm with k-means++ seeding, ``n_init`` restarts run as one ``jax.vmap`` and the iterations as
a ``lax.scan``, all under one ``jax.jit``. The labels are only used afterwards, to score the clusters: purity
(each cluster counted as its majority digit) and the adjusted Rand index.

    python examples/kmeans_digits.py           # all 1797 digits, k = 10, 10 restarts
    python examples/kmeans_digits.py --tiny    # a smoke test
"""

import argparse
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import jaxreg as jr


def squared_distances(x, centers):
    return jnp.sum(x**2, axis=1)[:, None] - 2.0 * x @ centers.T + jnp.sum(centers**2, axis=1)[None, :]


def kmeans_plus_plus(key, x, k):
    """k-means++ seeding: each next center drawn with probability proportional to D(x)^2."""
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, x.shape[0])]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)

    def add(i, centers):
        chosen = jnp.arange(k) < i
        d2 = jnp.min(jnp.where(chosen[None, :], squared_distances(x, centers), jnp.inf), axis=1)
        index = jax.random.categorical(keys[i], jnp.log(jnp.maximum(d2, 1e-12)))
        return centers.at[i].set(x[index])

    return jax.lax.fori_loop(1, k, add, centers)


@functools.partial(jax.jit, static_argnames=("k", "iterations", "n_init"))
def kmeans(key, x, *, k, iterations, n_init):
    """Best of ``n_init`` runs of Lloyd's algorithm (lowest inertia): ``(centers, assignment, inertia)``."""

    def lloyd(centers, _):
        assignment = jnp.argmin(squared_distances(x, centers), axis=1)
        one_hot = jax.nn.one_hot(assignment, k, dtype=x.dtype)
        counts = jnp.sum(one_hot, axis=0)
        means = (one_hot.T @ x) / jnp.maximum(counts, 1.0)[:, None]
        return jnp.where(counts[:, None] > 0, means, centers), None

    def one_run(key):
        centers, _ = jax.lax.scan(lloyd, kmeans_plus_plus(key, x, k), None, length=iterations)
        d2 = squared_distances(x, centers)
        return centers, jnp.argmin(d2, axis=1), jnp.sum(jnp.min(d2, axis=1))

    centers, assignments, inertias = jax.vmap(one_run)(jax.random.split(key, n_init))
    best = jnp.argmin(inertias)
    return centers[best], assignments[best], inertias[best]


def purity(assignment, labels):
    """Fraction of examples whose cluster's majority label is their own label."""
    return sum(np.bincount(labels[assignment == c]).max() for c in np.unique(assignment)) / len(labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    iterations, n_init = (5, 2) if args.tiny else (100, 10)
    splits = [jr.data.load("digits", split=s, seed=0) for s in ("train", "validation", "test")]
    x = np.concatenate([s[0] for s in splits]).reshape(-1, 64)
    labels = np.concatenate([s[1] for s in splits])

    _, assignment, inertia = kmeans(jax.random.key(0), jnp.asarray(x), k=10, iterations=iterations, n_init=n_init)
    assignment = np.asarray(assignment)
    reference = KMeans(n_clusters=10, n_init=n_init, max_iter=iterations, random_state=0).fit(x)
    print(f"jax k-means:     inertia {float(inertia):8.1f}, purity {purity(assignment, labels):.4f}, "
          f"adjusted Rand {adjusted_rand_score(labels, assignment):.4f}")
    print(f"sklearn KMeans:  inertia {reference.inertia_:8.1f}, purity {purity(reference.labels_, labels):.4f}, "
          f"adjusted Rand {adjusted_rand_score(labels, reference.labels_):.4f}")
    print(f"cluster purity: jax {purity(assignment, labels):.4f}, sklearn {purity(reference.labels_, labels):.4f}")


if __name__ == "__main__":
    main()
