"""A small transformer classifier with dropout 0.1 and decoupled weight decay.

``TransformerClassifier`` (from the experiments' model zoo) is a pre-LayerNorm encoder with GELU
feed-forward blocks and mean pooling; its dropout (on the attention weights, the residual branches and
inside the feed-forward network; not on the embeddings, ``input_dropout_rate=0``, which on this task slows
learning far more) is ``jaxreg.flax.linen.Dropout``. The data: 500 ``synthetic_sequences``, whose label says
whether the first token occurs again, a rule that needs attention; so few that the unregularized model
memorizes them (see ``jaxreg experiment transformer``).

    python examples/transformer.py           # 150 epochs (about a minute on 2 CPU cores)
    python examples/transformer.py --tiny    # a smoke test

The story comparing it with the unregularized model: ``jaxreg experiment transformer``.
"""

import argparse
import os

import jax
import optax

import jaxreg as jr
from jaxreg.experiments.models import TransformerClassifier


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=bool(os.environ.get("JAXREG_EXAMPLES_TINY")))
    args = parser.parse_args()
    size = dict(model_dim=8, num_heads=2, num_layers=1, mlp_dim=16) if args.tiny else \
        dict(model_dim=32, num_heads=2, num_layers=2, mlp_dim=64)
    epochs = 2 if args.tiny else 150
    splits = [jr.data.load("synthetic_sequences", split=s, seed=0, vocab_size=8, length=8, n_train=500)
              for s in ("train", "validation", "test")]
    (x, y), validation, (x_test, y_test) = splits
    model = TransformerClassifier(num_outputs=2, vocab_size=8, dropout_rate=0.1, input_dropout_rate=0.0, **size)
    optimizer = optax.chain(optax.scale_by_adam(), jr.weight_decay(0.01), optax.scale_by_learning_rate(1e-3))
    apply_fn = jr.linen_apply(model)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    evaluate = jr.make_eval_step(apply_fn, loss_fn)
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    state = jr.create_train_state(params, optimizer, jax.random.key(1))
    state, history = jr.fit(state, jr.make_train_step(apply_fn, loss_fn, optimizer), (x, y), epochs=epochs,
                            batch_size=32, val_data=validation, eval_step=evaluate, eval_train=True, progress=False)
    print(f"train accuracy {history['train_eval_accuracy'][-1]:.4f}, "
          f"best validation accuracy {max(history['val_accuracy']):.4f}")
    print(f"test accuracy {float(evaluate(state, x_test, y_test)['accuracy']):.4f}")


if __name__ == "__main__":
    main()
