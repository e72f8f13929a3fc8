"""A small CNN with the full regularization recipe, in one compiled training step.

Batch norm, spatial dropout and dropout in the model; gradient clipping, AdamW (decoupled weight decay) and
reduce-on-plateau in the optax chain; an L2 penalty in the loss; random shifts of the training images inside
the step; early stopping with the best weights restored in ``jr.fit``.

    python examples/cnn.py           # conv 16 - conv 32 - dense 64 on the 8x8 digits, 30 epochs
    python examples/cnn.py --tiny    # a smoke test

The story comparing it with a plain CNN: ``jaxreg experiment cnn`` (``--dataset cifar10`` when prepared).
"""

import argparse
import os

import flax.linen as nn
import jax
import optax

import jaxreg as jr
from jaxreg.flax import linen as jrl


class CNN(nn.Module):
    features: tuple[int, int] = (32, 64)
    dense_size: int = 128

    @nn.compact
    def __call__(self, x, train: bool):
        def bn_relu(h):
            return nn.relu(jrl.BatchNorm(momentum=0.9)(h, use_running_average=not train))

        x = bn_relu(nn.Conv(self.features[0], (3, 3), use_bias=False)(x))
        x = jrl.SpatialDropout(0.1)(x, deterministic=not train)
        x = bn_relu(nn.Conv(self.features[1], (3, 3), use_bias=False)(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2)).reshape((x.shape[0], -1))
        x = bn_relu(nn.Dense(self.dense_size, use_bias=False)(x))
        x = jrl.Dropout(0.5)(x, deterministic=not train)
        return nn.Dense(10)(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    model, epochs = (CNN((4, 8), 16), 2) if args.tiny else (CNN((16, 32), 64), 30)
    (x, y), validation, (x_test, y_test) = [jr.data.load("digits", split=s, seed=0)
                                            for s in ("train", "validation", "test")]
    batch_size = 32
    optimizer = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.scale_by_adam(),
        jr.weight_decay(1e-4),  # decoupled (AdamW), on kernels only
        optax.scale_by_learning_rate(1e-3),
        # jr.fit hands every step the last validation loss; accumulating one epoch makes patience count epochs.
        optax.contrib.reduce_on_plateau(factor=0.5, patience=3, accumulation_size=len(x) // batch_size),
    )

    def shift(params, model_state, images, *, key, training):
        # Random shifts of up to one pixel, drawn from the step's key, only while training.
        if training:
            images = jr.random_crop(jax.random.fold_in(key, 1), images, padding=1)
        return jr.linen_apply(model)(params, model_state, images, key=key, training=training)

    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    variables = model.init(jax.random.key(0), x[:1], train=False)
    state = jr.create_train_state(variables["params"], optimizer, jax.random.key(1),
                                  model_state={"batch_stats": variables["batch_stats"]})
    step = jr.make_train_step(shift, loss_fn, optimizer, penalties=[(jr.l2, 1e-4, jr.kernel_mask)])
    evaluate = jr.make_eval_step(shift, loss_fn)
    state, history = jr.fit(state, step, (x, y), epochs=epochs, batch_size=batch_size, val_data=validation,
                            eval_step=evaluate, early_stopping=jr.EarlyStopping(10, restore_best=True),
                            progress=False)
    print(f"epochs run {len(history['epoch'])}, best epoch {int(state.stopper.best_step) + 1}, "
          f"final learning-rate scale {history['lr_scale'][-1]:g}")
    print(f"test accuracy {float(evaluate(state, x_test, y_test)['accuracy']):.4f}")


if __name__ == "__main__":
    main()
