"""Image decode + resize throughput: Sluice vs Python Pillow on the same files.

Writes N photo-like 640x480 JPEGs (smooth gradients, blobs and noise,
quality 90, fixed seed) into a folder that a running `sluice serve` has as
its `--object-root`, then times, best of R runs each:

- Pillow, one process, one image at a time:
  `Image.open(path).convert('RGB').resize((224, 224))` (bicubic, Pillow's
  default), and the same followed by what each Sluice query does after the
  resize: re-encoding as JPEG quality 90 (as image_resize does), or a CHW
  float32 array / 255 (as image_to_tensor does);
- Sluice, over the wire:
  `SELECT count(*), sum(image_width(image_resize(read_image(ref), 224, 224)))
   FROM list_objects('file://<dir>/', '*.jpg')` and
  `SELECT count(*), sum(tensor_get(image_to_tensor(read_image(ref), 224, 224), 0, 0, 0))
   FROM list_objects(...)`, once with `datafusion.execution.target_partitions = 1`
  (one thread, like Pillow) and once with the server's default.

The answers are checked (counts equal N, widths 224, the tensor sum close
to Pillow's). Prints images/s per side and the ratios sluice/pillow
(higher is better for Sluice). Both sides run in one process, one after
the other, so they share machine noise.
"""

import argparse
import io
import os
import sys
import time

import numpy as np
import PIL
import psycopg
from PIL import Image

WIDTH, HEIGHT, QUALITY = 640, 480, 90


def photo(rng):
    """One photo-like 640x480 RGB image: a colour gradient and soft blobs
    (drawn at a quarter of the size and scaled up, they are smooth) plus
    sensor-like noise."""
    w, h = WIDTH // 4, HEIGHT // 4
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * x + np.sin(angle) * y) / (w + h)
    lo, hi = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = lo + (hi - lo) * ramp[..., None]
    for _ in range(rng.integers(3, 8)):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, 40)
        mask = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += mask[..., None] * rng.uniform(-120, 120, 3)
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    big = np.asarray(small.resize((WIDTH, HEIGHT), Image.BILINEAR), dtype=np.float32)
    noise = rng.standard_normal((HEIGHT, WIDTH, 3), dtype=np.float32) * np.float32(rng.uniform(2, 10))
    return np.clip(big + noise, 0, 255).astype(np.uint8)


def generate(folder, n, seed):
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"img_{i:06d}.jpg")
        Image.fromarray(photo(rng)).save(path, quality=QUALITY)
        paths.append(path)
    return paths


def best_time(run, repeats):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def pillow_resize(paths, size):
    for p in paths:
        Image.open(p).convert("RGB").resize((size, size))
    return len(paths)


def pillow_resize_encode(paths, size):
    for p in paths:
        out = io.BytesIO()
        Image.open(p).convert("RGB").resize((size, size)).save(out, format="JPEG", quality=QUALITY)
    return len(paths)


def pillow_tensor(paths, size):
    """CHW float32 / 255, as image_to_tensor without mean and std; returns
    the sum of every tensor's [0, 0, 0] (the Sluice query's answer)."""
    total = 0.0
    for p in paths:
        img = Image.open(p).convert("RGB").resize((size, size))
        t = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        total += float(t[0, 0, 0])
    return total


def connect(port, partitions):
    conn = psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)
    if partitions is not None:
        conn.execute(f"SET datafusion.execution.target_partitions = {partitions}")
    # Quoted: an unquoted dotted name does not work in SHOW; the answer is
    # (name, value) for DataFusion's settings.
    value = conn.execute('SHOW "datafusion.execution.target_partitions"').fetchone()[-1]
    if partitions is not None and str(value) != str(partitions):
        raise AssertionError(f"SET target_partitions = {partitions} did not take: SHOW says {value}")
    return conn, int(value)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dir", required=True, help="an --object-root of the server, empty")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    n, size = args.images, args.size
    folder = os.path.realpath(args.dir)

    began = time.perf_counter()
    paths = generate(folder, n, args.seed)
    mib = sum(os.path.getsize(p) for p in paths) / 2**20
    print(f"# {n} JPEGs {WIDTH}x{HEIGHT} q{QUALITY} ({mib:.0f} MiB) written in {time.perf_counter() - began:.1f} s; "
          f"resize to {size}x{size}, best of {args.repeats}; Pillow {PIL.__version__}, one process")

    peers = {}
    for name, run in [
        ("open+convert+resize", lambda: pillow_resize(paths, size)),
        ("…+save jpeg q90", lambda: pillow_resize_encode(paths, size)),
        ("…+CHW float32 /255", lambda: pillow_tensor(paths, size)),
    ]:
        t, result = best_time(run, args.repeats)
        peers[name] = (n / t, result)
    want_sum = peers["…+CHW float32 /255"][1]

    prefix = f"file://{folder}/"
    queries = {
        "image_resize": (
            f"SELECT count(*), sum(image_width(image_resize(read_image(ref), {size}, {size}))) "
            f"FROM list_objects('{prefix}', '*.jpg')"
        ),
        "image_to_tensor": (
            f"SELECT count(*), sum(tensor_get(image_to_tensor(read_image(ref), {size}, {size}), 0, 0, 0)) "
            f"FROM list_objects('{prefix}', '*.jpg')"
        ),
    }

    def verify(query, count, total):
        if count != n:
            raise AssertionError(f"count {count}, expected {n}")
        if query == "image_resize" and total != size * n:
            raise AssertionError(f"sum of widths {total}, expected {size * n}")
        # Decoders and kernels differ by a few levels: allow 4/255 per image.
        if query == "image_to_tensor" and abs(float(total) - want_sum) > n * 4 / 255:
            raise AssertionError(f"sum of t[0,0,0] {total}, Pillow's {want_sum:.4f}")

    sluice = {}  # (query, partitions label) -> images/s or an error
    labels = []
    failed = False
    for setting in (1, None):
        conn, partitions = connect(args.port, setting)
        label = f"p{partitions}" + ("" if setting is not None else " (default)")
        labels.append(label)
        with conn:
            for query, sql in queries.items():
                try:
                    t, (count, total) = best_time(lambda: conn.execute(sql).fetchone(), args.repeats)
                    verify(query, count, total)
                    sluice[query, label] = n / t
                except Exception as e:  # noqa: BLE001 - reported in the table
                    failed = True
                    sluice[query, label] = None
                    print(f"FAILED {query} ({label}): {type(e).__name__}: {e}", file=sys.stderr)

    rows = [
        ("image_resize", "open+convert+resize"),
        ("image_resize", "…+save jpeg q90"),
        ("image_to_tensor", "open+convert+resize"),
        ("image_to_tensor", "…+CHW float32 /255"),
    ]
    head = f"{'sluice query':16} {'pillow':22} {'pillow_img_s':>12}"
    for label in labels:
        head += f" {'sluice_' + label.split()[0] + '_img_s':>17} {'ratio':>6}"
    print(head)
    for query, peer in rows:
        rate = peers[peer][0]
        line = f"{query:16} {peer:22} {rate:12.1f}"
        for label in labels:
            s = sluice[query, label]
            line += f" {'FAILED':>17} {'-':>6}" if s is None else f" {s:17.1f} {s / rate:6.2f}"
        print(line)
    print(f"# sluice columns: {', '.join(labels)} = datafusion.execution.target_partitions; "
          f"pillow is single-threaded")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
