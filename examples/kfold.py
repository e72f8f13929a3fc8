"""5-fold cross-validation of an L2 coefficient, every fold and every coefficient in ONE vmapped program.

``jr.kfold_fit`` trains ``len(l2s) * k`` members: each fold weights the loss of its training examples by
its mask and scores the held-out ones; the L2 coefficient is a traced hyperparameter, so the step is built
inside the vmapped function from one member's value. Member ``g * k + f`` is coefficient ``g`` on fold ``f``.

    python examples/kfold.py           # 256-256 MLP on digits (train + validation pooled), 30 epochs
    python examples/kfold.py --tiny    # a smoke test

The story crossing dropout rates with L2 strengths: ``jaxreg experiment kfold``.
"""

import argparse
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxreg as jr


class MLP(nn.Module):
    hidden_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    hidden_sizes, epochs, k = ((16,), 2, 5) if args.tiny else ((256, 256), 30, 5)
    (x, y), (xv, yv) = [jr.data.load("digits", split=s, seed=0) for s in ("train", "validation")]
    x, y = np.concatenate([x, xv]), np.concatenate([y, yv])
    l2s = jnp.array([0.0, 1e-4, 1e-3, 1e-2])

    model = MLP(hidden_sizes)
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    optimizer = optax.adam(1e-3)

    def make_step(hparams):  # hparams["l2"] is one member's (traced) coefficient
        return jr.make_train_step(apply_fn, loss_fn, optimizer, penalties=[(jr.l2, hparams["l2"], jr.kernel_mask)],
                                  jit=False)

    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    state = jr.create_train_state(params, optimizer, jax.random.key(1))
    states, histories = jr.kfold_fit(state, make_step, (x, y), k=k, epochs=epochs, batch_size=32,
                                     eval_step=jr.make_eval_step(apply_fn, loss_fn, jit=False),
                                     hparams={"l2": l2s}, key=jax.random.key(2))
    scores = np.array([h["val_accuracy"][-1] for h in histories]).reshape(len(l2s), k)
    for l2, row in zip(l2s.tolist(), scores):
        print(f"l2 {l2:<7g} cross-validated accuracy {row.mean():.4f} +- {row.std():.4f}")
    best = int(np.argmax(scores.mean(axis=1)))
    print(f"best l2 by {k}-fold cross-validation: {float(l2s[best]):g} ({len(histories)} members, one program)")


if __name__ == "__main__":
    main()
