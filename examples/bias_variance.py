"""From overfitting to underfitting: train and validation accuracy along a log grid of L2 strengths.

``jr.sweep_fit`` trains one model per strength, all from the same initial parameters and batches, as ONE
vmapped program (the coefficient is traced). Weak L2: training accuracy far above validation (variance);
strong L2: both fall (bias).

    python examples/bias_variance.py           # 256-256 MLP on digits, 40 epochs
    python examples/bias_variance.py --tiny    # a smoke test

The story with the dropout sweep and the figure: ``jaxreg experiment bias_variance``.
"""

import argparse
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
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
    hidden_sizes, epochs = ((16,), 2) if args.tiny else ((256, 256), 40)
    (x, y), validation = [jr.data.load("digits", split=s, seed=0) for s in ("train", "validation")]
    strengths = jnp.array([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1])

    model = MLP(hidden_sizes)
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    optimizer = optax.adam(1e-3)

    def make_step(hparams):
        return jr.make_train_step(apply_fn, loss_fn, optimizer, penalties=[(jr.l2, hparams["l2"], jr.kernel_mask)],
                                  jit=False)

    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    state = jr.create_train_state(params, optimizer, jax.random.key(1))
    _, histories = jr.sweep_fit(state, make_step, (x, y), hparams={"l2": strengths}, epochs=epochs, batch_size=32,
                                val_data=validation, eval_step=jr.make_eval_step(apply_fn, loss_fn, jit=False),
                                eval_train=True)
    print("l2        train acc  val acc   gap")
    for strength, history in zip(strengths.tolist(), histories):
        train, val = history["train_eval_accuracy"][-1], history["val_accuracy"][-1]
        print(f"{strength:<8g}  {train:.4f}     {val:.4f}   {train - val:+.4f}")
    best = max(range(len(histories)), key=lambda i: histories[i]["val_accuracy"][-1])
    print(f"best validation accuracy at l2 = {float(strengths[best]):g} ({len(histories)} models, one program)")


if __name__ == "__main__":
    main()
