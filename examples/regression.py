"""Dropout vs batch norm vs both on a small real regression task (MSE), against ridge regression.

``diabetes`` (scikit-learn's bundled 442 patients, 10 features, disease progression after a year; 300 training
examples; features and target standardized with the training statistics, so an MSE of 1 is the target's
variance). An MLP trained with Adam (learning rate 0.01, batch 10) on the squared error, four ways.
``jaxreg.flax.linen.BatchNorm`` keeps its running statistics in the ``batch_stats`` collection, which
``jr.linen_apply`` threads through the step as the model state.

    python examples/regression.py           # 128-128 MLP, 50 epochs
    python examples/regression.py --tiny    # a smoke test

The story with three seeds, figures and a report: ``jaxreg experiment regression``.
"""

import argparse
import os

import flax.linen as nn
import jax
import numpy as np
import optax

import jaxreg as jr
from jaxreg.flax import linen as jrl


class MLP(nn.Module):
    hidden_sizes: tuple[int, ...]
    dropout_rate: float = 0.0
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        for width in self.hidden_sizes:
            x = nn.Dense(width, use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = jrl.BatchNorm(momentum=0.9)(x, use_running_average=not train)
            x = nn.relu(x)
            if self.dropout_rate:
                x = jrl.Dropout(self.dropout_rate)(x, deterministic=not train)
        return nn.Dense(1)(x)


def squared_error(predictions, targets):
    return ((predictions - targets) ** 2)[:, 0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    hidden_sizes, epochs = ((16,), 2) if args.tiny else ((128, 128), 50)
    (x, y), validation, (x_test, y_test) = [jr.data.load("diabetes", split=s, seed=0)
                                            for s in ("train", "validation", "test")]
    optimizer = optax.adam(0.01)
    mse = {}
    for name, rate, batch_norm in [("none", 0.0, False), ("dropout", 0.2, False), ("batchnorm", 0.0, True),
                                   ("dropout+batchnorm", 0.2, True)]:
        model = MLP(hidden_sizes, rate, batch_norm)
        variables = model.init(jax.random.key(0), x[:1], train=False)
        model_state = {k: v for k, v in variables.items() if k != "params"}  # {"batch_stats": ...} or {}
        apply_fn = jr.linen_apply(model)
        state = jr.create_train_state(variables["params"], optimizer, jax.random.key(1), model_state=model_state)
        evaluate = jr.make_eval_step(apply_fn, squared_error)
        state, history = jr.fit(state, jr.make_train_step(apply_fn, squared_error, optimizer), (x, y),
                                epochs=epochs, batch_size=10, val_data=validation, eval_step=evaluate, progress=False)
        mse[name] = float(evaluate(state, x_test, y_test)["loss"])
        print(f"{name:18s} final validation MSE {history['val_loss'][-1]:.4f}  test MSE {mse[name]:.4f}")
    # Reference: scikit-learn's RidgeCV (its strength chosen by its own cross-validation on the training set).
    from sklearn.linear_model import RidgeCV

    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, y.ravel())
    ridge_mse = float(np.mean((ridge.predict(x_test) - y_test.ravel()) ** 2))
    best = min(mse, key=mse.get)
    print(f"lowest test MSE: {best} {mse[best]:.4f}; ridge regression {ridge_mse:.4f}")


if __name__ == "__main__":
    main()
