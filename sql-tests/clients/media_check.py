"""Multimodal values end to end through psycopg 3: real JPEG, PNG and WAV
files made here with Pillow and `wave`, read by `sluice serve` processes
started here with `--object-root` (and once with SLUICE_OBJECT_ROOTS):

- list_objects + read_image + image_to_tensor against Pillow + numpy doing
  the same preprocessing (JPEG decoders and resize kernels differ by a few
  levels, so within a tolerance); image_decode exactly against Pillow for
  PNGs (RGB, greyscale, RGBA); image_resize / image_thumbnail / image_crop
  sizes, and the returned bytes decoded by Pillow; image_width / height /
  format; audio_sample_rate / channels / duration and audio_to_tensor;
  object_ref sizes;
- IMAGE, TENSOR and OBJECT_REF columns in a table, read back byte for byte
  after a restart on the same data directory; an image as a bytea
  parameter (binary and text format); NULLs in, NULLs out;
- objects whose names a URI must escape (space, %, #, ?) are listed and
  read back through their refs, locally and on S3;
- refusals: paths outside the root (absolute, `../`, `%2e%2e`, a symbolic
  link leading out) are 42501, a missing file 58P01, a corrupt or truncated
  image 22P03, and the server keeps serving after each;
- S3 (a local moto server, as in s3_check.py): list_objects with sizes and
  etags, read_image, and a key outside the root is 42501.

Usage: media_check.py [SLUICE_BINARY]   (default: $SLUICE_BIN)
Picks free ports itself; needs Pillow, numpy, moto[server] and boto3.
Exits non-zero if any check failed.
"""

import hashlib
import io
import math
import os
import subprocess
import sys
import tempfile
import time
import wave

import boto3
import numpy as np
import psycopg
from PIL import Image

from crash_check import start  # the same start-up wait as the other checks
from s3_check import finish, free_port, s3_env, start_moto, stop

BUCKET = "media-test"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
TENSOR_W, TENSOR_H = 32, 24
# The tensors are normalised ((p/255 - mean) / std), so one 8-bit level is
# about 0.017. JPEG decoders (libjpeg-turbo in Pillow, zune-jpeg in Sluice)
# differ by a level or two and the two bicubic kernels by a few more.
MAX_TENSOR_DIFF = 0.1
MEAN_TENSOR_DIFF = 0.02
AUDIO_RATE, AUDIO_SECONDS, AUDIO_HZ = 16000, 0.5, 440.0
# File names with characters that mean something in a URI; each starts
# with a distinct letter so that list_objects can pick it alone.
ODD_NAMES = ["a space.jpg", "b café.jpg", "c 100%.jpg", "d x%20y.jpg", "e #1.jpg", "f why?.jpg"]
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)


def serve(binary, port, data_dir, log, roots, env=None):
    """crash_check.start() with an `--object-root` flag per root."""
    args = [a for root in roots for a in ("--object-root", root)]
    return start(binary, port, data_dir, log, env=env, extra_args=args)


# --- media files -----------------------------------------------------------


def photo(rng, width, height):
    """A photo-like RGB array: smooth gradients plus sensor-like noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([
        255 * x / max(width - 1, 1),
        255 * y / max(height - 1, 1),
        127 + 100 * np.sin(x / 7) * np.cos(y / 5),
    ], axis=-1)
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_media(root, outside):
    """Writes the test files; returns {name: path} of the interesting ones."""
    rng = np.random.default_rng(20261124)
    photos = os.path.join(root, "photos")
    for d in (photos, os.path.join(root, "audio"), os.path.join(root, "docs"), os.path.join(root, "broken"), outside):
        os.makedirs(d, exist_ok=True)
    files = {}

    def save(name, img, **kwargs):
        path = os.path.join(photos, name)
        img.save(path, **kwargs)
        files[name] = path

    save("landscape.jpg", Image.fromarray(photo(rng, 320, 240)), quality=90)
    save("small.jpg", Image.fromarray(photo(rng, 96, 64)), quality=90)
    save("portrait_grey.jpg", Image.fromarray(photo(rng, 60, 90)).convert("L"), quality=90)
    save("rgb.png", Image.fromarray(photo(rng, 50, 40)))
    save("grey.png", Image.fromarray(photo(rng, 40, 30)).convert("L"))
    rgba = np.concatenate([photo(rng, 33, 21), rng.integers(0, 256, (21, 33, 1), dtype=np.uint8)], axis=-1)
    save("rgba.png", Image.fromarray(rgba, "RGBA"))

    # A JPEG outside the root, and a link to it inside.
    secret = os.path.join(outside, "secret.jpg")
    Image.fromarray(photo(rng, 16, 16)).save(secret, quality=90)
    os.symlink(secret, os.path.join(photos, "leak.jpg"))
    files["secret.jpg"] = secret
    files["leak.jpg"] = os.path.join(photos, "leak.jpg")

    files["tone.wav"] = os.path.join(root, "audio", "tone.wav")
    frames = int(AUDIO_RATE * AUDIO_SECONDS)
    t = np.arange(frames) / AUDIO_RATE
    left = np.round(12000 * np.sin(2 * np.pi * AUDIO_HZ * t)).astype("<i2")
    right = np.round(6000 * np.sin(2 * np.pi * AUDIO_HZ * t)).astype("<i2")
    with wave.open(files["tone.wav"], "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(AUDIO_RATE)
        w.writeframes(np.stack([left, right], axis=1).tobytes())

    files["notes.txt"] = os.path.join(root, "docs", "notes.txt")
    with open(files["notes.txt"], "w") as f:
        f.write("not an image\n" * 20)
    with open(files["rgb.png"], "rb") as f:
        png = f.read()
    files["truncated.png"] = os.path.join(root, "broken", "truncated.png")
    with open(files["truncated.png"], "wb") as f:
        f.write(png[: len(png) * 2 // 3])
    # Names a URI must escape: each listed object must be readable by its ref.
    os.makedirs(os.path.join(root, "names"))
    small = file_bytes(files["small.jpg"])
    for name in ODD_NAMES:
        with open(os.path.join(root, "names", name), "wb") as f:
            f.write(small)
    return files


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def reference_tensor(path, width, height):
    """torchvision-style preprocessing with Pillow: CHW float32."""
    img = Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC)
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = (a - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return a.transpose(2, 0, 1)


def uri(path):
    return "file://" + path


# --- the checks ------------------------------------------------------------


def expect_error(conn, name, sql, code, params=None):
    """`sql` must fail with SQLSTATE `code`, and the connection must still
    answer afterwards."""
    try:
        rows = conn.execute(sql, params).fetchall()
        check(name, False, f"succeeded with {str(rows)[:160]}, expected SQLSTATE {code}")
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        check(name, e.sqlstate == code, f"SQLSTATE {e.sqlstate} ({first}), expected {code}")
    try:
        alive = conn.execute("SELECT 1").fetchone()
    except psycopg.Error as e:
        alive = f"error: {e}"
    check(f"{name}: server keeps serving", alive == (1,), f"SELECT 1 gave {alive}")


def image_checks(conn, files, root):
    photos = os.path.join(root, "photos")
    jpgs = sorted(n for n in files if n.endswith(".jpg") and n not in ("leak.jpg", "secret.jpg"))
    pngs = ["grey.png", "rgb.png", "rgba.png"]

    rows = conn.execute(
        f"SELECT uri, image_to_tensor(read_image(ref), {TENSOR_W}, {TENSOR_H}, "
        f"ARRAY{MEAN}, ARRAY{STD}) FROM list_objects('{uri(photos)}/', '*.jpg') ORDER BY uri"
    ).fetchall()
    listed = [r[0] for r in rows]
    want = [uri(os.path.join(photos, n)) for n in jpgs]
    check("list_objects lists the JPEGs (not the link leading out of the root)", listed == want,
          f"got {listed}, expected {want}")
    tensors = {}
    for u, t in rows:
        name = os.path.basename(u)
        got = np.array(t, dtype=np.float32)
        ref = reference_tensor(files[name], TENSOR_W, TENSOR_H)
        tensors[name] = t
        if got.shape != ref.shape:
            check(f"image_to_tensor {name}: shape", False, f"got {got.shape}, expected {ref.shape}")
            continue
        diff = np.abs(got - ref)
        print(f"     ({name}: max |sluice - pillow| {diff.max():.4f}, mean {diff.mean():.5f})")
        check(f"image_to_tensor {name} vs Pillow bicubic + normalise",
              diff.max() <= MAX_TENSOR_DIFF and diff.mean() < MEAN_TENSOR_DIFF,
              f"max {diff.max():.4f} (limit {MAX_TENSOR_DIFF}), mean {diff.mean():.5f} (limit {MEAN_TENSOR_DIFF})")

    # Decoding alone: JPEG within a few levels, PNG exactly.
    for name in jpgs + pngs:
        (dec,) = conn.execute(f"SELECT image_decode(read_image('{uri(files[name])}'))").fetchone()
        got = np.array(dec)
        ref = np.asarray(Image.open(files[name]).convert("RGB"), dtype=np.int16)
        if got.shape != ref.shape:
            check(f"image_decode {name}: shape", False, f"got {got.shape}, expected {ref.shape}")
            continue
        diff = np.abs(got - ref)
        worst, near = int(diff.max()), float((diff <= 2).mean())
        if name.endswith(".png"):
            check(f"image_decode {name} equals Pillow's convert('RGB')", worst == 0, f"max difference {worst} levels")
        else:
            # Chroma upsampling and IDCT rounding differ between decoders: a
            # few samples of a noisy 4:2:0 JPEG are 3-4 levels apart.
            check(f"image_decode {name} within 2 levels of Pillow (99.5% of samples, all within 5)",
                  worst <= 5 and near >= 0.995, f"max difference {worst} levels, {near:.2%} within 2")

    # Header properties, and object_ref sizes.
    for name in jpgs + pngs:
        w, h, fmt, size = conn.execute(
            f"SELECT image_width(i), image_height(i), image_format(i), object_ref('{uri(files[name])}')['size'] "
            f"FROM (SELECT read_image('{uri(files[name])}') AS i)"
        ).fetchone()
        with Image.open(files[name]) as img:
            want = (img.width, img.height, img.format.lower(), os.path.getsize(files[name]))
        check(f"image_width/height/format, object_ref size: {name}", (w, h, fmt, size) == want,
              f"got {(w, h, fmt, size)}, expected {want}")

    # Transforms: sizes as Sluice reports them and as Pillow decodes them.
    cases = [
        ("image_resize(landscape.jpg, 40, 30)", "landscape.jpg", "image_resize(i, 40, 30)", (40, 30)),
        ("image_resize(rgba.png, 17, 50)", "rgba.png", "image_resize(i, 17, 50)", (17, 50)),
        ("image_thumbnail(landscape.jpg, 64)", "landscape.jpg", "image_thumbnail(i, 64)", (64, 48)),
        ("image_thumbnail(portrait_grey.jpg, 30)", "portrait_grey.jpg", "image_thumbnail(i, 30)", (20, 30)),
        ("image_thumbnail(small.jpg, 500) keeps the size", "small.jpg", "image_thumbnail(i, 500)", (96, 64)),
        ("image_crop(landscape.jpg, 10, 20, 100, 50)", "landscape.jpg", "image_crop(i, 10, 20, 100, 50)", (100, 50)),
        ("image_crop(rgb.png, 5, 7, 20, 10)", "rgb.png", "image_crop(i, 5, 7, 20, 10)", (20, 10)),
    ]
    for label, name, expr, size in cases:
        w, h, fmt, data = conn.execute(
            f"SELECT image_width(r), image_height(r), image_format(r), r::bytea "
            f"FROM (SELECT {expr} AS r FROM (SELECT read_image('{uri(files[name])}') AS i))"
        ).fetchone()
        with Image.open(io.BytesIO(data)) as img:
            decoded = (img.width, img.height, img.format.lower())
        in_format = os.path.splitext(name)[1][1:].replace("jpg", "jpeg")
        check(f"{label}: {size[0]}x{size[1]} {in_format}",
              (w, h, fmt) == (*size, in_format) and decoded == (*size, in_format),
              f"Sluice says {(w, h, fmt)}, Pillow decodes {decoded}")
    # A PNG crop is lossless: exactly Pillow's crop.
    (data,) = conn.execute(f"SELECT image_crop(read_image('{uri(files['rgb.png'])}'), 5, 7, 20, 10)::bytea").fetchone()
    got = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ref = np.asarray(Image.open(files["rgb.png"]).convert("RGB").crop((5, 7, 25, 17)))
    check("image_crop of a PNG equals Pillow's crop pixel for pixel", np.array_equal(got, ref),
          f"max difference {np.abs(got.astype(int) - ref).max()}")
    return tensors


def audio_checks(conn, files):
    u = uri(files["tone.wav"])
    rate, channels, duration, fmt, size = conn.execute(
        f"SELECT audio_sample_rate(a), audio_channels(a), audio_duration(a), audio_format(a), "
        f"object_ref('{u}')['size'] FROM (SELECT read_audio('{u}') AS a)"
    ).fetchone()
    want = (AUDIO_RATE, 2, AUDIO_SECONDS, "wav", os.path.getsize(files["tone.wav"]))
    got = (rate, channels, duration, fmt, size)
    check("audio_sample_rate/channels/duration/format, object_ref size", got == want, f"got {got}, expected {want}")

    with wave.open(files["tone.wav"]) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2).T / 32768.0
    (native,) = conn.execute(f"SELECT audio_to_tensor(read_audio('{u}'))").fetchone()
    native = np.array(native)
    ok = native.shape == pcm.shape and np.abs(native - pcm).max() < 1e-6
    check("audio_to_tensor(a): [2, frames], samples / 32768", ok,
          f"shape {native.shape}" + (f", max diff {np.abs(native - pcm).max()}" if native.shape == pcm.shape else ""))

    frames = int(8000 * AUDIO_SECONDS)
    shape, tensor = conn.execute(
        f"SELECT tensor_shape(t), t FROM (SELECT audio_to_tensor(read_audio('{u}'), 8000) AS t)"
    ).fetchone()
    check("audio_to_tensor(a, 8000) shape", shape == [2, frames], f"got {shape}, expected [2, {frames}]")
    resampled = np.array(tensor)
    if resampled.ndim == 2 and resampled.shape[1] > 8:
        # A 440 Hz tone keeps its level through resampling (middle half, away from the edges).
        n = resampled.shape[1]
        rms = np.sqrt(np.mean(resampled[:, n // 4 : 3 * n // 4] ** 2, axis=1))
        want_rms = np.array([12000, 6000]) / 32768 / math.sqrt(2)
        check("audio_to_tensor(a, 8000) keeps the tone's level", np.allclose(rms, want_rms, rtol=0.05),
              f"RMS {rms}, expected {want_rms}")
    (shape,) = conn.execute(f"SELECT tensor_shape(audio_to_tensor(read_audio('{u}'), 8000, true))").fetchone()
    check("audio_to_tensor(a, 8000, true) is mono", shape == [1, frames], f"got {shape}, expected [1, {frames}]")


def store(conn, root):
    conn.execute(f"CREATE TABLE photos (id INT, img IMAGE, t TENSOR(FLOAT32,[3,{TENSOR_H},{TENSOR_W}]), r OBJECT_REF)")
    conn.execute(
        f"INSERT INTO photos SELECT CAST(row_number() OVER (ORDER BY uri) AS INT), read_image(ref), "
        f"image_to_tensor(read_image(ref), {TENSOR_W}, {TENSOR_H}, ARRAY{MEAN}, ARRAY{STD}), ref "
        f"FROM list_objects('{uri(os.path.join(root, 'photos'))}/', '*.jpg')"
    )


def announced_types(conn):
    """IMAGE reaches drivers as bytea, TENSOR and OBJECT_REF as json."""
    with conn.cursor() as cur:
        cur.execute("SELECT img, t, r FROM photos LIMIT 0")
        got = [d.type_code for d in cur.description]
    want = [17, 114, 114]
    check("IMAGE announced as bytea, TENSOR and OBJECT_REF as json", got == want, f"type oids {got}, expected {want}")


def stored(conn):
    """id -> (sha256 of the image, tensor, uri, size, etag) for every row."""
    out = {}
    for i, data, t, r in conn.execute("SELECT id, img::bytea, t, r FROM photos ORDER BY id").fetchall():
        out[i] = (sha256(data) if data is not None else None, t, r["uri"] if r else None,
                  r.get("size") if r else None, r.get("etag") if r else None)
    return out


def parameter_checks(conn, files):
    png = file_bytes(files["rgb.png"])
    jpg = file_bytes(files["small.jpg"])
    conn.execute("INSERT INTO photos (id, img) VALUES (%b, %b)", (100, jpg))  # binary format
    conn.execute("INSERT INTO photos (id, img) VALUES (%t, %t)", (101, png))  # text format (\x…)
    conn.execute("INSERT INTO photos (id, img) VALUES (%s, %s)", (102, png))
    rows = conn.execute(
        "SELECT id, image_width(img), image_height(img), image_format(img), img::bytea FROM photos "
        "WHERE id >= 100 ORDER BY id"
    ).fetchall()
    got = [(i, w, h, f, sha256(b)) for i, w, h, f, b in rows]
    want = [(100, 96, 64, "jpeg", sha256(jpg)), (101, 50, 40, "png", sha256(png)), (102, 50, 40, "png", sha256(png))]
    check("an image as a bytea parameter (binary, text, default format) reads back identical", got == want,
          f"got {got}, expected {want}")
    expect_error(conn, "a parameter that is not an image is 22P03",
                 "INSERT INTO photos (id, img) VALUES (%s, %s)", "22P03", (103, b"not an image at all"))


def odd_name_checks(conn, list_prefix, label):
    """Every object list_objects lists under `list_prefix` reads back
    through its ref, whatever its name."""
    for name in ODD_NAMES:
        try:
            rows = conn.execute(
                f"SELECT uri, image_width(read_image(ref)) FROM list_objects('{list_prefix}', '{name[0]}*')"
            ).fetchall()
            ok = len(rows) == 1 and rows[0][1] == 96
            detail = f"got {rows}"
        except psycopg.Error as e:
            ok, detail = False, f"SQLSTATE {e.sqlstate}: {str(e).strip().splitlines()[0][:160]}"
        check(f"{label}: {name!r} listed and read through its ref", ok, detail)


def null_checks(conn):
    """NULL in, NULL out: a NULL IMAGE in a table, and untyped NULLs."""
    conn.execute("INSERT INTO photos (id, img) VALUES (104, NULL)")
    row = conn.execute(
        "SELECT image_width(img), image_to_tensor(img, 4, 4), image_resize(img, 4, 4), image_decode(img) "
        "FROM photos WHERE id = 104"
    ).fetchone()
    check("a NULL IMAGE column gives NULL properties, tensors and images", row == (None,) * 4, f"got {row}")
    for expr in ["image_width(NULL)", "image_to_tensor(NULL, 4, 4)", "image_resize(NULL, 4, 4)",
                 "image_decode(NULL)", "audio_to_tensor(NULL)", "read_image(NULL)"]:
        try:
            got = conn.execute(f"SELECT {expr}").fetchone()
            check(f"{expr} is NULL", got == (None,), f"got {got}")
        except psycopg.Error as e:
            check(f"{expr} is NULL", False, f"SQLSTATE {e.sqlstate}: {str(e).strip().splitlines()[0][:160]}")


def refusal_checks(conn, files, root):
    photos = os.path.join(root, "photos")
    outside_rel = os.path.relpath(files["secret.jpg"], photos)  # ../../outside/secret.jpg
    cases = [
        ("read_bytes('file:///etc/passwd') is 42501", "SELECT read_bytes('file:///etc/passwd')", "42501"),
        ("a ../ traversal out of the root is 42501",
         f"SELECT read_bytes('{uri(photos)}/{outside_rel}')", "42501"),
        ("a %2e%2e traversal out of the root is 42501",
         f"SELECT read_bytes('{uri(photos)}/{outside_rel.replace('..', '%2e%2e')}')", "42501"),
        ("a symbolic link leading out of the root is 42501",
         f"SELECT read_image('{uri(files['leak.jpg'])}')", "42501"),
        ("object_ref of a file outside the root is 42501",
         f"SELECT object_ref('{uri(files['secret.jpg'])}')", "42501"),
        ("list_objects outside the root is 42501", "SELECT * FROM list_objects('file:///etc/')", "42501"),
        ("a missing file is 58P01", f"SELECT read_bytes('{uri(photos)}/missing.jpg')", "58P01"),
        ("a text file as an image is 22P03", f"SELECT read_image('{uri(files['notes.txt'])}')", "22P03"),
        ("a truncated PNG is 22P03",
         f"SELECT image_to_tensor(read_image('{uri(files['truncated.png'])}'), 8, 8)", "22P03"),
        ("a crop outside the image is 22023",
         f"SELECT image_crop(read_image('{uri(files['small.jpg'])}'), 90, 0, 10, 10)", "22023"),
    ]
    for name, sql, code in cases:
        expect_error(conn, name, sql, code)
    # The link is not followed silently: read_bytes refuses it too.
    expect_error(conn, "read_bytes through the link is 42501", f"SELECT read_bytes('{uri(files['leak.jpg'])}')", "42501")


def s3_checks(binary, work, log, moto_log, files, procs):
    moto_port, port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    procs.append(start_moto(moto_port, moto_log))
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket=BUCKET)
    uploaded = {}
    for name in ("landscape.jpg", "small.jpg", "portrait_grey.jpg", "rgb.png"):
        body = file_bytes(files[name])
        s3.put_object(Bucket=BUCKET, Key=f"photos/{name}", Body=body)
        uploaded[name] = body
    s3.put_object(Bucket=BUCKET, Key="other/x.jpg", Body=uploaded["small.jpg"])
    for name in ODD_NAMES:
        s3.put_object(Bucket=BUCKET, Key=f"photos/names/{name}", Body=uploaded["small.jpg"])
    listing = {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="photos/")["Contents"]}

    procs.append(serve(binary, port, os.path.join(work, "s3-data"), log, [f"s3://{BUCKET}/photos/"],
                       env=s3_env(endpoint)))
    with connect(port) as conn:
        rows = conn.execute(
            f"SELECT uri, size, ref, image_width(read_image(ref)), sha256(read_bytes(ref)) "
            f"FROM list_objects('s3://{BUCKET}/photos/', '*.jpg') ORDER BY uri"
        ).fetchall()
        jpgs = sorted(n for n in uploaded if n.endswith(".jpg"))
        want = [f"s3://{BUCKET}/photos/{n}" for n in jpgs]
        check("S3 list_objects lists the JPEGs", [r[0] for r in rows] == want,
              f"got {[r[0] for r in rows]}, expected {want}")
        for u, size, ref, width, digest in rows:
            key = u.removeprefix(f"s3://{BUCKET}/")
            name = os.path.basename(key)
            obj = listing.get(key, {})
            got = (size, ref.get("size"), ref.get("etag"))
            want_meta = (obj.get("Size"), obj.get("Size"), obj.get("ETag"))
            check(f"S3 {name}: size and etag as S3 lists them", got == want_meta, f"got {got}, expected {want_meta}")
            with Image.open(files[name]) as img:
                want_width = img.width
            check(f"S3 read_image {name}: width and bytes", width == want_width and
                  digest == hashlib.sha256(uploaded[name]).digest(),
                  f"width {width} (expected {want_width}), sha256 {digest.hex() if digest else None}")
        odd_name_checks(conn, f"s3://{BUCKET}/photos/names/", "S3")
        expect_error(conn, "S3 key outside the root is 42501",
                     f"SELECT read_image('s3://{BUCKET}/other/x.jpg')", "42501")
        expect_error(conn, "S3 ../ out of the root is 42501",
                     f"SELECT read_bytes('s3://{BUCKET}/photos/../other/x.jpg')", "42501")
        expect_error(conn, "S3 %2e%2e out of the root is 42501",
                     f"SELECT read_bytes('s3://{BUCKET}/photos/%2e%2e/other/x.jpg')", "42501")
        expect_error(conn, "S3 list_objects outside the root is 42501",
                     f"SELECT * FROM list_objects('s3://{BUCKET}/other/')", "42501")
        expect_error(conn, "S3 missing key inside the root is 58P01",
                     f"SELECT read_bytes('s3://{BUCKET}/photos/missing.jpg')", "58P01")
    status = stop(procs.pop())
    check("S3 server exits 0 on SIGTERM", status == 0, f"status {status}")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SLUICE_BIN", "")
    if not binary:
        sys.exit("usage: media_check.py SLUICE_BINARY (or set SLUICE_BIN)")
    binary = os.path.abspath(binary)
    began = time.monotonic()
    work = os.path.realpath(tempfile.mkdtemp(prefix="sluice-media-"))
    root = os.path.join(work, "media")
    data_dir = os.path.join(work, "data")
    log = open(os.path.join(work, "server.log"), "ab")
    moto_log = open(os.path.join(work, "moto.log"), "ab")
    procs = []
    try:
        files = make_media(root, os.path.join(work, "outside"))
        port = free_port()
        procs.append(serve(binary, port, data_dir, log, [root]))
        with connect(port) as conn:
            image_checks(conn, files, root)
            audio_checks(conn, files)
            store(conn, root)
            announced_types(conn)
            parameter_checks(conn, files)
            null_checks(conn)
            odd_name_checks(conn, f"{uri(os.path.join(root, 'names'))}/", "local")
            before = stored(conn)
            refusal_checks(conn, files, root)
        jpgs = sorted(n for n in files if n.endswith(".jpg") and n not in ("leak.jpg", "secret.jpg"))
        want = {i + 1: (sha256(file_bytes(files[n])), uri(files[n]), os.path.getsize(files[n]))
                for i, n in enumerate(jpgs)}
        got = {i: (v[0], v[2], v[3]) for i, v in before.items() if i < 100}
        check("IMAGE / OBJECT_REF columns hold the files' bytes and sizes", got == want, f"got {got}, expected {want}")
        check("TENSOR column holds [3, 24, 32] tensors",
              all(np.array(v[1]).shape == (3, TENSOR_H, TENSOR_W) for i, v in before.items() if i < 100),
              f"shapes {[np.array(v[1]).shape for v in before.values()]}")

        status = stop(procs.pop())
        check("SIGTERM ends the server with status 0", status == 0, f"status {status}")
        # The same data directory again, the root given by SLUICE_OBJECT_ROOTS this time.
        env = dict(os.environ, SLUICE_OBJECT_ROOTS=f"{root},{os.path.join(work, 'outside')}")
        procs.append(start(binary, port, data_dir, log, env=env))
        with connect(port) as conn:
            after = stored(conn)
            check("IMAGE, TENSOR and OBJECT_REF columns identical after a restart", after == before,
                  f"{len(after)} rows; differing ids {sorted(i for i in before if after.get(i) != before[i])}")
            (n,) = conn.execute(
                f"SELECT count(*) FROM list_objects('{uri(os.path.join(work, 'outside'))}/', '*.jpg')"
            ).fetchone()
            check("SLUICE_OBJECT_ROOTS (comma-separated) sets the roots", n == 1, f"count {n}")
        status = stop(procs.pop())
        check("restarted server exits 0 on SIGTERM", status == 0, f"status {status}")

        s3_checks(binary, work, log, moto_log, files, procs)
    except Exception as e:  # a step that could not run at all
        check("run", False, f"{type(e).__name__}: {e}")
    finish("media check", failures, work, procs, [log, moto_log], f"files and moto log under {work}",
           f" in {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
