"""Generate the `data/photos/` dataset: real-photo cut-outs pasted onto real background photos.

Four classes (`bird`, `flower`, `fruit_veg`, `mammal`) of 128x128 RGB JPEGs (Pillow, quality 90):

    data/photos/train/<class>/NNNN.jpg   (1000 per class)
    data/photos/test/<class>/NNNN.jpg    (300 per class)
    data/photos/manifest.csv             (file, class, stamp, background of every image)

Objects are the photographic stamps of Debian's `tuxpaint-stamps-default` (GPL-2), backgrounds are
photographs from `mate-backgrounds` (GPL-2+) and `lomiri-wallpapers-16.04` (CC-BY-4.0,
CC-BY-SA-4.0, CC0-1.0; see data/SOURCE.md). Every stamp appears in both splits: the test images are
new random composites (their own seeds: other positions, scales, flips, rotations, colour jitter) of
the same cut-outs, on backgrounds held out from training (`--bg-split regions`, the default: a held-out strip
of every photograph; `--bg-split photos`: other background photographs). So the test set
measures recognising known objects in new compositions and scenes, not unseen objects.

Everything is drawn from `random.Random` seeded per image, so the same packages (and the same Pillow
version: resampling and the JPEG encoder must match) give the same files:

    apt-get install tuxpaint-stamps-default mate-backgrounds lomiri-wallpapers-16.04
    python sample_models/make_photos.py            # rewrites sample_models/data/photos/

Needs only Pillow and the standard library.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data" / "photos"
SIZE = 128
CLASSES = ("bird", "flower", "fruit_veg", "mammal")
APT_PACKAGES = ("tuxpaint-stamps-default", "mate-backgrounds", "lomiri-wallpapers-16.04")

# stamp folders (relative to the tuxpaint stamps dir, searched recursively) -> class
STAMP_DIRS = {
    "animals/birds": "bird",
    "plants/flowers": "flower",
    "food/fruit": "fruit_veg",
    "food/vegetables": "fruit_veg",
    "animals/mammals": "mammal",
}
# besides `cartoon/` folders and `*_mirror*` files: stamps that are not photographs of the class
EXCLUDED_STAMPS = {
    "animals/mammals/hedgehog.png",  # cartoon drawing
    "animals/mammals/echidna.png",  # black silhouette
    "animals/mammals/bears/toys/edward_bear.png",  # teddy bear (a toy, not a mammal)
    "plants/flowers/plastic/chuvanna_plastic_poo.png",  # plastic flower
}

# background photographs: (package, path relative to /usr/share/backgrounds, split).
# Left out on purpose: photos whose subject is one of the classes (FreshFlower, Garden, LadyBird,
# TwoWings, YellowFlower: flowers; friends_by_Aitzol_Berasategi: dogs; free_by_Peter_Nerlich: a bird;
# Picture_0B_by_freespace: a fig; seeding_by_Clements_Engelhardt: dandelions) and the computer-made
# artwork (umang_by_Abhishek_Mudgal, analogpattern_by_Peter_Nerlich, mate abstract/desktop).
BACKGROUNDS = (
    ("mate-backgrounds", "mate/nature/Aqua.jpg", "train"),
    ("mate-backgrounds", "mate/nature/Blinds.jpg", "train"),
    ("mate-backgrounds", "mate/nature/GreenMeadow.jpg", "train"),
    ("mate-backgrounds", "mate/nature/Storm.jpg", "train"),
    ("mate-backgrounds", "mate/nature/Wood.jpg", "train"),
    ("lomiri-wallpapers-16.04", "Bridge_by_Sander_Klootwijk.jpg", "train"),
    ("lomiri-wallpapers-16.04", "Dragonfly_by_Bolly.jpg", "train"),
    ("lomiri-wallpapers-16.04", "Picture_1A_by_freespace.jpg", "train"),
    ("lomiri-wallpapers-16.04", "Wine_by_Jakkub_Mede.jpg", "train"),
    ("lomiri-wallpapers-16.04", "aitzgorri_by_Aitzol_Berasategi.jpg", "train"),
    ("lomiri-wallpapers-16.04", "picosdeeuropa_by_Aitzol_Berasategi.jpg", "train"),
    ("mate-backgrounds", "mate/nature/Dune.jpg", "test"),
    ("mate-backgrounds", "mate/nature/RainDrops.jpg", "test"),
    ("lomiri-wallpapers-16.04", "greentock_by_Peter_Nerlich.jpg", "test"),
    ("lomiri-wallpapers-16.04", "life_by_Aitzol_Berasategi.jpg", "test"),
    ("lomiri-wallpapers-16.04", "sunset_by_Aitzol_Berasategi.jpg", "test"),
)
BG_MAX_SIDE = 768  # backgrounds are first shrunk to this longest side (speed; crops are 128 px)


def missing(msg: str) -> None:
    sys.exit(
        f"{msg}\nInstall the source packages (Debian/Ubuntu):\n"
        f"    sudo apt-get install {' '.join(APT_PACKAGES)}\n"
        "or pass --stamps-dir / --backgrounds-dir."
    )


def list_stamps(stamps_dir: Path) -> dict[str, list[str]]:
    """Class -> sorted relative paths of the photographic stamps."""
    out: dict[str, list[str]] = {c: [] for c in CLASSES}
    for sub, cls in STAMP_DIRS.items():
        folder = stamps_dir / sub
        if not folder.is_dir():
            missing(f"stamp folder not found: {folder}")
        for p in sorted(folder.rglob("*.png")):
            rel = p.relative_to(stamps_dir).as_posix()
            if "cartoon" in p.relative_to(folder).parts[:-1] or "_mirror" in p.name:
                continue
            if rel in EXCLUDED_STAMPS:
                continue
            out[cls].append(rel)
    for c in CLASSES:
        out[c].sort()
    return out


def split_stamps(stamps: dict[str, list[str]]) -> dict[str, dict[str, list[str]]]:
    """Both splits use every stamp (the test set is new composites of the same objects)."""
    return {s: {c: list(stamps[c]) for c in CLASSES} for s in ("train", "test")}


def load_stamp(path: Path) -> Image.Image:
    im = Image.open(path).convert("RGBA")
    # drop near-transparent fringe pixels, then crop to the object
    alpha = im.getchannel("A").point(lambda v: 0 if v < 16 else v)
    im.putalpha(alpha)
    box = alpha.getbbox()
    return im.crop(box) if box else im


def load_background(path: Path) -> Image.Image:
    im = Image.open(path)
    im = ImageOps.exif_transpose(im).convert("RGB")
    scale = BG_MAX_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    return im


def jitter(im: Image.Image, rng: random.Random, amount: float) -> Image.Image:
    """Brightness / contrast / saturation jitter of an RGB image."""
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enh(im).enhance(rng.uniform(1 - amount, 1 + amount))
    return im


TEST_REGION_FRACTION = 0.3  # --bg-split regions: the last 30% of each photo's long side is test


def background_region(bg: Image.Image, split: str, by_region: bool) -> Image.Image:
    """The part of a background photo a split may crop from (all of it unless `by_region`)."""
    if not by_region:
        return bg
    long_side = max(bg.size)
    cut = round(long_side * (1 - TEST_REGION_FRACTION))
    gap = 8  # a few pixels between the two regions so no crop straddles the cut
    if bg.width >= bg.height:
        box = (0, 0, cut - gap, bg.height) if split == "train" else (cut + gap, 0, bg.width, bg.height)
    else:
        box = (0, 0, bg.width, cut - gap) if split == "train" else (0, cut + gap, bg.width, bg.height)
    return bg.crop(box)


def background_crop(bg: Image.Image, rng: random.Random) -> Image.Image:
    side = rng.randint(min(160, min(bg.size)), min(bg.size))
    x = rng.randint(0, bg.width - side)
    y = rng.randint(0, bg.height - side)
    crop = bg.crop((x, y, x + side, y + side)).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return jitter(crop, rng, 0.2)


def place_stamp(canvas: Image.Image, stamp: Image.Image, rng: random.Random) -> None:
    # longest side 48-112 px; small source stamps (fruit ~50 px) are enlarged at most 1.8x
    target = rng.uniform(48, 112)
    scale = min(target / max(stamp.size), 1.8)
    w = max(8, round(stamp.width * scale))
    h = max(8, round(stamp.height * scale))
    im = stamp.resize((w, h), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    angle = rng.uniform(-15, 15)
    im = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    rgb = jitter(im.convert("RGB"), rng, 0.15)
    alpha = im.getchannel("A").filter(ImageFilter.GaussianBlur(0.6))  # soften cut-out edges
    im = rgb.convert("RGBA")
    im.putalpha(alpha)
    # keep at least ~85% of the object inside the frame
    mx, my = round(im.width * 0.15), round(im.height * 0.15)
    x = rng.randint(-mx, max(-mx, SIZE - im.width + mx))
    y = rng.randint(-my, max(-my, SIZE - im.height + my))
    canvas.alpha_composite(im, (x, y))


def compose(stamp: Image.Image, bg: Image.Image, rng: random.Random) -> Image.Image:
    canvas = background_crop(bg, rng).convert("RGBA")
    place_stamp(canvas, stamp, rng)
    out = canvas.convert("RGB")
    if rng.random() < 0.3:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stamps-dir", type=Path, default=Path("/usr/share/tuxpaint/stamps"),
                    help="tuxpaint-stamps-default's stamps folder")
    ap.add_argument("--backgrounds-dir", type=Path, default=Path("/usr/share/backgrounds"),
                    help="folder holding mate/nature/*.jpg (mate-backgrounds) and the "
                         "lomiri-wallpapers-16.04 JPEGs")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bg-split", choices=("photos", "regions"), default="regions",
                    help="hold out whole background photos for test (photos) or the last 30%% of "
                         "every photo's long side (regions)")
    ap.add_argument("--list", action="store_true", help="print the stamp/background split and exit")
    args = ap.parse_args(argv)

    if not args.stamps_dir.is_dir():
        missing(f"tuxpaint stamps not found at {args.stamps_dir}")
    stamps = list_stamps(args.stamps_dir)
    split = split_stamps(stamps)
    by_region = args.bg_split == "regions"
    bgs = {"train": [], "test": []}
    for pkg, rel, s in BACKGROUNDS:
        p = args.backgrounds_dir / rel
        if not p.is_file():
            missing(f"background {p} (package {pkg}) not found")
        for t in (("train", "test") if by_region else (s,)):
            bgs[t].append(rel)

    if args.list:
        for s in ("train", "test"):
            print(f"[{s}] backgrounds: {' '.join(bgs[s])}")
            for c in CLASSES:
                print(f"[{s}] {c} ({len(split[s][c])}): {' '.join(Path(n).name for n in split[s][c])}")
        return 0

    stamp_cache: dict[str, Image.Image] = {}
    full_bgs = {rel: load_background(args.backgrounds_dir / rel) for _, rel, _ in BACKGROUNDS}
    bg_cache = {(s, rel): background_region(full_bgs[rel], s, by_region)
                for s in ("train", "test") for rel in bgs[s]}
    counts = {"train": args.train_per_class, "test": args.test_per_class}

    if args.out.exists():
        shutil.rmtree(args.out)
    rows = []
    for s in ("train", "test"):
        for c in CLASSES:
            d = args.out / s / c
            d.mkdir(parents=True)
            names = split[s][c]
            for i in range(counts[s]):
                rng = random.Random(f"{args.seed}-{s}-{c}-{i}")
                # cycle through the stamps so each is used about equally often
                if i % len(names) == 0:
                    order = list(names)
                    random.Random(f"{args.seed}-{s}-{c}-order-{i // len(names)}").shuffle(order)
                name = order[i % len(names)]
                bg_rel = rng.choice(bgs[s])
                if name not in stamp_cache:
                    stamp_cache[name] = load_stamp(args.stamps_dir / name)
                img = compose(stamp_cache[name], bg_cache[s, bg_rel], rng)
                fn = d / f"{i:04d}.jpg"
                img.save(fn, "JPEG", quality=90)
                rows.append((f"{s}/{c}/{fn.name}", s, c, name, bg_rel))
        print(f"{s}: {counts[s]} x {len(CLASSES)} images", flush=True)

    with open(args.out / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "split", "class", "stamp", "background"])
        w.writerows(rows)

    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in sorted(args.out.rglob("*.jpg")):
        h.update(p.relative_to(args.out).as_posix().encode())
        h.update(p.read_bytes())
    print(f"wrote {len(rows)} images, {total / 1e6:.1f} MB, sha256 of all JPEGs {h.hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
