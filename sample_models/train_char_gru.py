"""Train the CharGRU next-character model on Tiny Shakespeare.

Uses the full text from ``../shared/data/tinyshakespeare`` when present, else
the shipped 100k-char slice. The last 10% of the text is held out. Training
uses 100-char windows (a different start offset each epoch), zero initial
state, sparse categorical cross-entropy on logits. Saves
``trained/char_gru.keras`` and updates ``trained/metrics.json``.

Usage: python sample_models/train_char_gru.py [--epochs N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make ``sample_models`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_models import _trainutil as U  # noqa: E402

U.quiet_tf()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from sample_models import architectures as A  # noqa: E402
from sample_models import datasets as D  # noqa: E402

SEQ_LEN = 100
HOLDOUT = 0.1


class LogitsOnly(keras.Model):
    """Training wrapper: returns only the logits of a CharGRU (not saved)."""

    def __init__(self, inner: A.CharGRU, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, x, training=False):
        return self.inner(x, training=training)[0]


def windows(ids: np.ndarray, offset: int = 0, batch: int | None = None):
    """Cut ``ids[offset:]`` into (input, target) windows of SEQ_LEN chars."""
    ids = ids[offset:]
    n = (len(ids) - 1) // SEQ_LEN
    if batch:
        n -= n % batch
    x = ids[: n * SEQ_LEN].reshape(n, SEQ_LEN)
    y = ids[1: n * SEQ_LEN + 1].reshape(n, SEQ_LEN)
    return x.astype("int32"), y.astype("int32")


class ShiftedWindows(keras.utils.PyDataset):
    """Shuffled batches of SEQ_LEN windows; a new random start offset each epoch."""

    def __init__(self, ids: np.ndarray, batch: int, seed: int = 0):
        super().__init__()
        self.ids, self.batch = ids, batch
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self):
        x, y = windows(self.ids, int(self.rng.integers(SEQ_LEN)), self.batch)
        perm = self.rng.permutation(len(x))
        self.x, self.y = x[perm], y[perm]

    def __len__(self):
        return len(self.x) // self.batch

    def __getitem__(self, i):
        s = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[s], self.y[s]


def compile_for(model: keras.Model, lr=1e-3, jit=False) -> keras.Model:
    """Wrap and compile a CharGRU for fit/evaluate."""
    wrapper = LogitsOnly(model)
    wrapper.compile(
        optimizer=keras.optimizers.Adam(lr, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        jit_compile=jit)
    return wrapper


def sample(model: A.CharGRU, prime: str, n: int, temperature: float = 0.8, seed: int = 0) -> str:
    """Generate ``n`` chars after ``prime`` using the (logits, state) API."""
    rng = np.random.default_rng(seed)
    logits, state = model(D.encode(prime)[None, :])
    out = []
    for _ in range(n):
        z = np.asarray(logits[0, -1], dtype=np.float64) / temperature
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        logits, state = model(np.array([[nxt]], dtype="int32"), state)
    return prime + D.decode(out)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3, help="peak LR (cosine decay)")
    ap.add_argument("--shipped-only", action="store_true",
                    help="train on the shipped slice even if the full text exists")
    ap.add_argument("--no-jit", action="store_true", help="disable XLA for training")
    ap.add_argument("--verbose", type=int, default=2)
    ap.add_argument("--out", type=Path, default=U.TRAINED_DIR,
                    help="output folder (default: sample_models/trained)")
    args = ap.parse_args(argv)

    text = D.load_text(shipped_only=args.shipped_only)
    data_kind = D.text_source(shipped_only=args.shipped_only)[1]
    ids = D.encode(text)
    split = int(len(ids) * (1 - HOLDOUT))
    train_ids, held_ids = ids[:split], ids[split:]
    x_held, y_held = windows(held_ids)
    print(f"text: {len(text)} chars ({data_kind}); train {len(train_ids)}, "
          f"held-out {len(held_ids)} chars ({len(x_held)} windows)", flush=True)

    U.seed_everything(0)
    model = A.build_model("char_gru")
    steps = args.epochs * (len(windows(train_ids, 0, args.batch_size)[0]) // args.batch_size)
    lr = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=steps, alpha=0.05)
    wrapper = compile_for(model, lr, jit=not args.no_jit)
    batches = ShiftedWindows(train_ids, args.batch_size, seed=0)
    t0 = time.perf_counter()
    hist = wrapper.fit(batches, epochs=args.epochs, verbose=args.verbose)
    seconds = time.perf_counter() - t0
    train_loss = float(hist.history["loss"][-1])

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "char_gru.keras"
    A.inference_copy(model).save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), reloaded.get_weights()))
    diff = float(np.abs(np.asarray(model(x_held[:8])[0]) - np.asarray(reloaded(x_held[:8])[0])).max())
    if not same or diff > 1e-5:
        raise RuntimeError(f"reloaded char_gru differs (weights equal={same}, max diff={diff})")
    held_loss, held_acc = compile_for(reloaded).evaluate(x_held, y_held, batch_size=256, verbose=0)
    print(f"final train loss {train_loss:.4f}; held-out loss {held_loss:.4f}, "
          f"next-char top-1 accuracy {held_acc:.4f}; {seconds:.1f}s", flush=True)
    print("sample:\n" + sample(reloaded, "ROMEO:\n", 200))
    U.update_metrics("char_gru", {
        "task": "next-character prediction (65-char vocab), outputs (logits, state)",
        "input": "x int32 (N, T) char ids; hidden float32 (N, 256) optional",
        "heldout_next_char_accuracy": round(float(held_acc), 4),
        "heldout_loss": round(float(held_loss), 4),
        "heldout_set": f"last {HOLDOUT:.0%} of the text ({len(held_ids)} chars, "
                       f"{len(x_held)} windows of {SEQ_LEN}, zero initial state)",
        "final_train_loss": round(train_loss, 4),
        "params": int(model.count_params()),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "train_data": f"{data_kind} Tiny Shakespeare ({len(text)} chars, first 90% for training)",
        "train_seconds": round(seconds, 1),
        "files": {path.name: U.file_size(path)},
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
