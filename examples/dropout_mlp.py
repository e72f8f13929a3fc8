"""Dropout in an MLP: the same network trained with and without dropout on the bundled digits.

The model is plain ``flax.linen`` with ``jaxreg.flax.linen.Dropout`` (a drop-in for ``nn.Dropout``); the
training loop is ``jr.fit``: one jit-compiled ``lax.scan`` per epoch, validation after every epoch.

    python examples/dropout_mlp.py           # 256-256 MLP, 60 epochs (about a minute on 2 CPU cores)
    python examples/dropout_mlp.py --tiny    # a smoke test: 16 units, 2 epochs

The story with figures and a report: ``jaxreg experiment dropout_mlp``.
"""

import argparse
import os

import flax.linen as nn
import jax
import optax

import jaxreg as jr
from jaxreg.flax import linen as jrl


class MLP(nn.Module):
    hidden_sizes: tuple[int, ...]
    dropout_rate: float

    @nn.compact
    def __call__(self, x, train: bool):
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden_sizes:
            x = nn.relu(nn.Dense(width)(x))
            x = jrl.Dropout(self.dropout_rate)(x, deterministic=not train)
        return nn.Dense(10)(x)


def train(dropout_rate, data, *, hidden_sizes, epochs, seed=0):
    """Train one MLP; return its final train (evaluation mode) and test accuracy."""
    (x, y), validation, (x_test, y_test) = data
    model = MLP(hidden_sizes, dropout_rate)
    params = model.init(jax.random.key(seed), x[:1], train=False)["params"]
    optimizer = optax.adam(1e-3)
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    state = jr.create_train_state(params, optimizer, jax.random.key(seed + 1))
    state, history = jr.fit(state, jr.make_train_step(apply_fn, loss_fn, optimizer), (x, y), epochs=epochs,
                            batch_size=32, val_data=validation, eval_step=evaluate, eval_train=True, progress=False)
    return history["train_eval_accuracy"][-1], float(evaluate(state, x_test, y_test)["accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")),
                        help="smoke-test size (also set by JAXREG_EXAMPLES_TINY=1)")
    args = parser.parse_args()
    hidden_sizes, epochs = ((16,), 2) if args.tiny else ((256, 256), 60)
    data = [jr.data.load("digits", split=split, seed=0) for split in ("train", "validation", "test")]
    results = {rate: train(rate, data, hidden_sizes=hidden_sizes, epochs=epochs) for rate in (0.0, 0.5)}
    for rate, (train_acc, test_acc) in results.items():
        print(f"dropout {rate:.1f}: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}, "
              f"gap {train_acc - test_acc:+.4f}")
    print(f"test accuracy: no dropout {results[0.0][1]:.4f}, dropout 0.5 {results[0.5][1]:.4f}")


if __name__ == "__main__":
    main()
