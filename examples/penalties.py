"""L1 vs L2 vs proximal L1 on an MLP: accuracy, weight norms and exact zeros.

Coupled penalties go into the loss (``make_train_step(..., penalties=[(jr.l1, c, jr.kernel_mask)])``); the
proximal L1 step is an optax transformation placed after the optimizer (``jr.proximal_l1``). Only the
proximal step produces weights that are exactly 0.0: a subgradient step on ``|w|`` jumps over zero.

    python examples/penalties.py           # 256-256 MLP on digits, 40 epochs
    python examples/penalties.py --tiny    # a smoke test

The story with figures and a report: ``jaxreg experiment penalties``.
"""

import argparse
import os

import flax.linen as nn
import jax
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
    hidden_sizes, epochs = ((16,), 2) if args.tiny else ((256, 256), 40)
    (x, y), _, (x_test, y_test) = [jr.data.load("digits", split=s, seed=0) for s in ("train", "validation", "test")]
    model = MLP(hidden_sizes)
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    lr = 1e-3
    # name -> (optimizer, coupled penalties)
    setups = {
        "l1": (optax.adam(lr), [(jr.l1, 3e-5, jr.kernel_mask)]),
        "l2": (optax.adam(lr), [(jr.l2, 3e-4, jr.kernel_mask)]),
        "proximal_l1": (optax.chain(optax.adam(lr), jr.proximal_l1(0.1 if not args.tiny else 1.0, learning_rate=lr,
                                                                   mask=jr.kernel_mask)), []),
    }
    zeros = {}
    for name, (optimizer, penalties) in setups.items():
        state = jr.create_train_state(params, optimizer, jax.random.key(1))
        step = jr.make_train_step(apply_fn, loss_fn, optimizer, penalties=penalties)
        state, _ = jr.fit(state, step, (x, y), epochs=epochs, batch_size=32, progress=False)
        accuracy = float(evaluate(state, x_test, y_test)["accuracy"])
        flags = jax.tree.leaves(jr.kernel_mask(state.params))
        kernels = np.concatenate([np.ravel(w) for w, keep in zip(jax.tree.leaves(state.params), flags) if keep])
        zeros[name] = float(jr.sparsity(state.params, mask=jr.kernel_mask))
        print(f"{name:12s} test accuracy {accuracy:.4f}  |W|_2 {np.linalg.norm(kernels):7.3f}  "
              f"exact zeros {zeros[name]:.2%}  |w| < 1e-3: {np.mean(np.abs(kernels) < 1e-3):.2%}")
    print(f"exact zeros: l1 {zeros['l1']:.2%}, proximal_l1 {zeros['proximal_l1']:.2%}")


if __name__ == "__main__":
    main()
