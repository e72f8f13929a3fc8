"""Early stopping on the validation loss with the best weights restored, against training to the end.

``jr.EarlyStopping`` is Keras' rule as a traceable state machine; ``jr.fit`` updates it after every epoch,
stops when it says so and puts back the best epoch's weights (``restore_best=True``).

    python examples/early_stopping.py           # 512-512 MLP on digits, up to 100 epochs
    python examples/early_stopping.py --tiny    # a smoke test

The story with the curves: ``jaxreg experiment early_stopping``.
"""

import argparse
import os

import flax.linen as nn
import jax
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
    hidden_sizes, epochs, patience = ((16,), 3, 0) if args.tiny else ((512, 512), 100, 10)
    (x, y), validation, (x_test, y_test) = [jr.data.load("digits", split=s, seed=0)
                                            for s in ("train", "validation", "test")]
    model = MLP(hidden_sizes)
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    optimizer = optax.adam(1e-3)
    step = jr.make_train_step(apply_fn, loss_fn, optimizer)
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]

    for stopper in (None, jr.EarlyStopping(patience, restore_best=True)):
        state = jr.create_train_state(params, optimizer, jax.random.key(1))
        state, history = jr.fit(state, step, (x, y), epochs=epochs, batch_size=32, val_data=validation,
                                eval_step=evaluate, early_stopping=stopper, progress=False)
        test = evaluate(state, x_test, y_test)
        name = "fixed epochs" if stopper is None else f"early stopping (patience {patience})"
        detail = "" if stopper is None else f", best epoch {int(state.stopper.best_step) + 1} restored"
        print(f"{name}: {len(history['epoch'])} epochs{detail}; test loss {float(test['loss']):.4f}, "
              f"test accuracy {float(test['accuracy']):.4f}")


if __name__ == "__main__":
    main()
