"""Rotation and zoom augmentation of the digits inside the compiled step, with MC-dropout evaluation.

Each training batch is rotated by up to +-15 degrees (``jr.random_rotation``) and zoomed by 0.9-1.1
(``jr.random_zoom``) in the step, through the engine's ``augment`` hook; evaluation sees the raw images.
The MLP also has dropout 0.5, and its test accuracy is measured twice: with the deterministic network,
and with ``jr.mc_predict`` (the softmax averaged over 20 dropout masks, Monte Carlo dropout).

    python examples/augmentation.py           # 30 epochs (seconds on 2 CPU cores)
    python examples/augmentation.py --tiny    # a smoke test

The story comparing it with mixup, cutmix, DropConnect, batch renorm, group lasso and orthogonality:
``jaxreg experiment augmentation``.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import optax

import jaxreg as jr
from jaxreg.experiments.models import MLP


def rotate_and_zoom(key, x, y):
    rotate_key, zoom_key = jax.random.split(key)
    return jr.random_zoom(zoom_key, jr.random_rotation(rotate_key, x, 15.0), 0.1), y


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    epochs, hidden, samples = (1, (16,), 2) if args.tiny else (30, (256, 256), 20)
    (x, y), validation, (x_test, y_test) = [jr.data.load("digits", split=s, seed=0)
                                            for s in ("train", "validation", "test")]
    model = MLP(num_outputs=10, hidden_sizes=hidden, dropout_rate=0.5)
    optimizer = optax.adam(1e-3)
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    state = jr.create_train_state(params, optimizer, jax.random.key(1))
    step = jr.make_train_step(apply_fn, loss_fn, optimizer, augment=rotate_and_zoom)
    state, history = jr.fit(state, step, (x, y), epochs=epochs, batch_size=32, val_data=validation,
                            eval_step=evaluate, progress=False)

    def probabilities(p, inputs, key):
        return jax.nn.softmax(apply_fn(p, state.model_state, inputs, key=key, training=True)[0])

    mean, _ = jr.mc_predict(probabilities, state.params, jnp.asarray(x_test), jax.random.key(2), samples)
    mc_accuracy = float(jnp.mean(jnp.argmax(mean, -1) == jnp.asarray(y_test)))
    print(f"best validation accuracy {max(history['val_accuracy']):.4f}")
    print(f"test accuracy {float(evaluate(state, x_test, y_test)['accuracy']):.4f}, "
          f"mc_predict ({samples} masks) {mc_accuracy:.4f}")


if __name__ == "__main__":
    main()
