"""Regenerate the small data files shipped in ``sample_models/data/``.

Reads the full originals from ``<repo>/../shared/data`` (or ``--shared DIR``)
and writes, reproducibly (gzip mtime=0):

* ``data/mnist/t10k-*-ubyte.gz``: byte-for-byte copies of the test set.
* ``data/mnist/train-subset-*-ubyte.gz``: the first 10,000 training
  images/labels, re-encoded as IDX with count 10000.
* ``data/tinyshakespeare/input.txt``: the first 100,000 characters of the
  text, cut back to the last line boundary.

Then prints the sha256 of every shipped file (as listed in data/SOURCE.md).

Usage: python sample_models/make_data.py [--shared DIR] [--check]
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
DEFAULT_SHARED = HERE.parents[1] / "shared" / "data"

N_TRAIN_SUBSET = 10_000
TEXT_CHARS = 100_000

SHIPPED = [
    "mnist/t10k-images-idx3-ubyte.gz",
    "mnist/t10k-labels-idx1-ubyte.gz",
    "mnist/train-subset-images-idx3-ubyte.gz",
    "mnist/train-subset-labels-idx1-ubyte.gz",
    "tinyshakespeare/input.txt",
]


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def idx_subset(raw: bytes, n: int) -> bytes:
    """Return an IDX (uint8) blob keeping only the first ``n`` items."""
    if raw[:3] != b"\x00\x00\x08":
        raise ValueError("not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = list(struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim]))
    if n > dims[0]:
        raise ValueError(f"asked for {n} items, file has {dims[0]}")
    item = 1
    for d in dims[1:]:
        item *= d
    body = raw[4 + 4 * ndim: 4 + 4 * ndim + n * item]
    dims[0] = n
    return raw[:4] + struct.pack(f">{ndim}I", *dims) + body


def gzip_fixed(data: bytes, name: str) -> bytes:
    """Gzip ``data`` with mtime=0 and a fixed embedded name (reproducible)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def text_slice(text: str, n: int) -> str:
    """First ``n`` characters of ``text``, cut back to the last newline."""
    if len(text) <= n:
        return text
    cut = text.rfind("\n", 0, n)
    return text[: cut + 1] if cut >= 0 else text[:n]


def build(shared: Path, out: Path) -> None:
    """Write every shipped file under ``out`` from the originals in ``shared``."""
    src_mnist, dst_mnist = shared / "mnist", out / "mnist"
    dst_mnist.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copyfile(src_mnist / name, dst_mnist / name)
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        raw = gzip.decompress((src_mnist / f"train-{kind}-{idx}-ubyte.gz").read_bytes())
        name = f"train-subset-{kind}-{idx}-ubyte"
        (dst_mnist / f"{name}.gz").write_bytes(gzip_fixed(idx_subset(raw, N_TRAIN_SUBSET), name))
    text = (shared / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    dst_text = out / "tinyshakespeare"
    dst_text.mkdir(parents=True, exist_ok=True)
    with open(dst_text / "input.txt", "w", encoding="utf-8", newline="") as f:
        f.write(text_slice(text, TEXT_CHARS))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                    help="folder holding mnist/ and tinyshakespeare/ originals")
    ap.add_argument("--check", action="store_true",
                    help="rebuild into a temp dir and compare with the shipped files")
    args = ap.parse_args(argv)
    if not (args.shared / "mnist").is_dir():
        print(f"originals not found under {args.shared}", file=sys.stderr)
        return 2
    if args.check:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            build(args.shared, Path(tmp))
            bad = [p for p in SHIPPED if sha256(Path(tmp) / p) != sha256(DATA / p)]
        print("OK: shipped files are reproducible" if not bad else f"MISMATCH: {bad}")
        return 1 if bad else 0
    build(args.shared, DATA)
    for p in SHIPPED:
        f = DATA / p
        print(f"{sha256(f)}  {f.stat().st_size:>9}  data/{p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
