"""The unsupervised contrast: k-means on the digits in JAX (no labels, no regularizer), checked against
scikit-learn's KMeans.

Lloyd's algorithm with k-means++ seeding, ``n_init`` restarts run as one ``jax.vmap`` and the iterations as
a ``lax.scan``, all under one ``jax.jit`` (``jaxreg.experiments.kmeans.kmeans``). The labels are only used
afterwards, to score the clusters: purity (each cluster counted as its majority digit) and the adjusted Rand
index. The "same init" rows start both implementations from the same k-means++ centers: they agree, so a
purity gap between the first two rows comes from the seeding and the restarts, not from the iterations.

    python examples/kmeans_digits.py           # all 1797 digits, k = 10, 10 restarts
    python examples/kmeans_digits.py --tiny    # a smoke test

The story with its report: ``jaxreg experiment kmeans``.
"""

import argparse
import os

import numpy as np

import jaxreg as jr
from jaxreg.experiments.kmeans import compare_kmeans


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    iterations, n_init = (5, 2) if args.tiny else (100, 10)
    splits = [jr.data.load("digits", split=s, seed=0) for s in ("train", "validation", "test")]
    x = np.concatenate([s[0] for s in splits]).reshape(-1, 64)
    labels = np.concatenate([s[1] for s in splits])
    rows = {r["technique"]: r for r in compare_kmeans(x, labels, k=10, n_init=n_init, iterations=iterations, seed=0)}
    for name, r in rows.items():
        print(f"{name + ':':20s} inertia {r['inertia']:8.1f}, purity {r['purity']:.4f}, "
              f"adjusted Rand {r['adjusted_rand']:.4f}")
    print(f"cluster purity: jax {rows['jax']['purity']:.4f}, sklearn {rows['sklearn']['purity']:.4f}")


if __name__ == "__main__":
    main()
