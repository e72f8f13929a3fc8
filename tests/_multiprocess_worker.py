"""One process of the multi-process tests (tests/test_multiprocess.py); run as a script, never collected.

``python tests/_multiprocess_worker.py SCENARIO OUT [--coordinator HOST:PORT --num-processes N --process-id I]``
runs one scenario in this process and writes ``OUT/p<process index>.npz`` (arrays) and ``.json`` (histories).
Without ``--coordinator`` it runs alone (the single-process references). Scenarios:

* ``train``: dropout masks of a sharded array, three hand-driven steps of an MLP (each process feeding its rows
  of each global batch to ``shard_batch``), ``jr.fit`` on a dataset given by rows (``shard_dataset(...,
  local=True)``) with validation on full arrays; with ``--members`` also ``jr.sweep_fit`` (the members loop).
* ``killed``: ``resumable_fit`` (saves waited for) that SIGKILLs this process after epoch 1's checkpoint.
* ``resume``: the same ``resumable_fit`` (background saves) started again on the killed run's directory.
* ``dead_peer``: process 1 SIGKILLs itself after a first collective; the others go on summing a sharded array
  (until JAX ends them).
* ``mismatch``: ``check_same`` with a seed that differs by process.
"""

import argparse
import json
import os
import signal
import sys
import time

import numpy as np

N, D, H, C, B, EPOCHS = 32, 64, 32, 4, 8, 3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("train", "killed", "resume", "dead_peer", "mismatch"))
    parser.add_argument("out")
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--ckpt")
    parser.add_argument("--heartbeat", type=int, default=10)
    parser.add_argument("--members", action="store_true", help="train: also jr.sweep_fit")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import optax

    import jaxreg as jr

    if args.coordinator:
        jr.parallel.initialize(args.coordinator, args.num_processes, args.process_id,
                               heartbeat_timeout_seconds=args.heartbeat, shutdown_timeout_seconds=args.heartbeat,
                               initialization_timeout=60)
    seed = args.process_id if args.scenario == "mismatch" else 0
    try:
        jr.parallel.check_same({"scenario": args.scenario, "seed": seed, "epochs": EPOCHS})
    except ValueError as err:
        print(f"worker: {err}", file=sys.stderr)
        return 2

    mesh = jr.parallel.data_mesh()
    me = jax.process_index()
    # numpy, not jax.random: every eager JAX op compiles once per process, and these runs start many processes
    rng = np.random.default_rng(10)
    x_all = rng.standard_normal((N, D), dtype=np.float32)
    y_all = np.argmax(x_all[:, :C], axis=-1).astype(np.int32)
    xv, yv = x_all[:16] * np.float32(0.5), y_all[:16]

    def apply_fn(params, model_state, x, *, key, training):
        h = jax.nn.relu(x @ params["dense0"]["kernel"] + params["dense0"]["bias"])
        h = jr.dropout(key, h, 0.25, deterministic=not training)
        return h @ params["dense1"]["kernel"] + params["dense1"]["bias"], model_state

    params = {"dense0": {"kernel": rng.standard_normal((D, H), dtype=np.float32) / 8, "bias": np.zeros(H, np.float32)},
              "dense1": {"kernel": rng.standard_normal((H, C), dtype=np.float32) / 6, "bias": np.zeros(C, np.float32)}}
    tx = optax.adam(1e-2)
    loss_fn = optax.softmax_cross_entropy_with_integer_labels
    step = jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, 1e-3, jr.kernel_mask)])
    evaluate = jr.make_eval_step(apply_fn, loss_fn)

    def fresh():
        return jr.parallel.replicate(mesh, jr.create_train_state(params, tx, jax.random.key(7)))

    rows = jr.parallel.local_rows(mesh, N)
    train_local = jr.parallel.shard_dataset(mesh, (x_all[rows], y_all[rows]), local=True)
    val = jr.parallel.shard_dataset(mesh, (xv, yv))
    arrays, histories = {}, {}

    def resumable(asynchronous, on_epoch_end=None):
        return jr.checkpoint.resumable_fit(fresh(), step, train_local, directory=args.ckpt, epochs=EPOCHS,
                                           batch_size=B, val_data=val, eval_step=evaluate, progress=False,
                                           asynchronous=asynchronous, on_epoch_end=on_epoch_end)

    if args.scenario == "train":
        from jax.experimental import multihost_utils

        ones = jr.parallel.shard_dataset(mesh, np.ones((16, D), np.float32))
        for impl in ("prng", "hash"):
            dropped = jax.jit(lambda k, v: jr.dropout(k, v, 0.5, mask_impl=impl))(jax.random.key(3), ones)
            arrays[f"mask_{impl}"] = np.asarray(multihost_utils.process_allgather(dropped, tiled=True)) != 0
        state, losses = fresh(), []
        for i in range(3):
            batch_rows = jr.parallel.local_rows(mesh, B)
            xb, yb = x_all[i * B:(i + 1) * B][batch_rows], y_all[i * B:(i + 1) * B][batch_rows]
            state, metrics = step(state, *jr.parallel.shard_batch(mesh, (xb, yb)))
            losses.append(float(metrics["loss"]))
        arrays["step_losses"] = np.asarray(losses)
        arrays.update({f"step_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(state.params))})
        state, histories["fit"] = jr.fit(fresh(), step, train_local, epochs=EPOCHS, batch_size=B, val_data=val,
                                         eval_step=evaluate, progress=False)
        arrays.update({f"fit_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(state.params))})
        if args.members:
            def make_step(h):
                return jr.make_train_step(apply_fn, loss_fn, tx, penalties=[(jr.l2, h["l2"], jr.kernel_mask)],
                                          jit=False)

            states, histories["sweep"] = jr.sweep_fit(fresh(), make_step, train_local, epochs=2, batch_size=B,
                                                      hparams={"l2": jnp.array([0.0, 0.1])}, val_data=val,
                                                      eval_step=evaluate)
            arrays.update({f"sweep_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(states.params))})
    elif args.scenario in ("killed", "resume"):
        epochs_before = sorted(int(name) for name in os.listdir(args.ckpt) if name.isdigit()) if os.path.isdir(
            args.ckpt) else []
        sealed = [e for e in epochs_before if os.path.exists(os.path.join(args.ckpt, str(e), "jaxreg_files.json"))]

        def die_after_epoch_1(epoch, state, history):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        if args.scenario == "killed":  # saves waited for: epoch 1's checkpoint is on disk when it dies
            state, histories["resumable"] = resumable(asynchronous=False, on_epoch_end=die_after_epoch_1)
        state, histories["resumable"] = resumable(asynchronous=True)  # background saves, as by default
        arrays.update({f"resumable_{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(state.params))})
        arrays["epochs_before"], arrays["sealed_before"] = np.asarray(epochs_before), np.asarray(sealed)
    elif args.scenario == "dead_peer":
        total = jax.jit(jnp.sum)
        jax.block_until_ready(total(train_local[0]))  # every process has joined a collective
        if me == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        start = time.monotonic()
        try:
            for _ in range(100_000):  # far longer than the test's time bound: JAX must end it
                jax.block_until_ready(total(train_local[0]))
        except Exception as err:  # noqa: BLE001 - whatever JAX raises when a peer is gone
            print(f"worker: peer lost after {time.monotonic() - start:.1f} s: {type(err).__name__}: "
                  f"{str(err).splitlines()[0][:300]}", file=sys.stderr, flush=True)
            return 3
        return 0

    np.savez(os.path.join(args.out, f"p{me}.npz"), **arrays)
    with open(os.path.join(args.out, f"p{me}.json"), "w") as f:
        json.dump(histories, f, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
