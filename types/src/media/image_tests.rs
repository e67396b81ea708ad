//! Tests for `image_probe` and `image_ops`.
//!
//! All fixtures are generated in memory with the `image` crate so the tests
//! need no files and cover every supported container and pixel layout.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, GrayImage, ImageBuffer, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

use super::image_ops::{self, Hwc};
use super::image_probe::{self, ImageInfo, MediaError};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

const ALL_FORMATS: [(ImageFormat, &str); 6] = [
    (ImageFormat::Png, "png"),
    (ImageFormat::Jpeg, "jpeg"),
    (ImageFormat::Gif, "gif"),
    (ImageFormat::WebP, "webp"),
    (ImageFormat::Bmp, "bmp"),
    (ImageFormat::Tiff, "tiff"),
];

/// r = x, g = y, b = (x + y) mod 256: every pixel says where it came from.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    })
}

fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

fn encode_dyn(img: &DynamicImage, fmt: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

fn encode_rgb(img: &RgbImage, fmt: ImageFormat) -> Vec<u8> {
    encode_dyn(&DynamicImage::ImageRgb8(img.clone()), fmt)
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

/// A structurally valid PNG whose IHDR declares `w`×`h` but whose IDAT holds
/// only a few bytes: fine for a header reader, fatal for a full decode.
fn png_with_header(w: u32, h: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    // zlib header + an empty stored block: valid start, far too little data.
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xff, 0xff],
    ));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

/// Tiny deterministic PRNG so the "random bytes" tests are reproducible.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn err_msg<T: std::fmt::Debug>(r: Result<T, MediaError>) -> String {
    r.expect_err("expected an error").message
}

fn assert_close(a: u8, b: u8, tol: u8, what: &str) {
    assert!(a.abs_diff(b) <= tol, "{what}: {a} vs {b} (tol {tol})");
}

// ---------------------------------------------------------------------------
// probe
// ---------------------------------------------------------------------------

#[test]
fn probe_reports_format_and_size_for_every_format() {
    let img = gradient(37, 23);
    for (fmt, name) in ALL_FORMATS {
        let bytes = encode_rgb(&img, fmt);
        let info = image_probe::probe(&bytes).unwrap();
        assert_eq!(
            info,
            ImageInfo {
                format: name,
                width: 37,
                height: 23
            },
            "{name}"
        );
    }
}

#[test]
fn probe_reads_header_only() {
    // 16000x16000 RGBA16 would be ~2 GB of pixels and the IDAT is nearly
    // empty, so this only succeeds if nothing is decoded or allocated.
    let png = png_with_header(16_000, 16_000, 16, 6);
    let info = image_probe::probe(&png).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        ("png", 16_000, 16_000)
    );
    // ...whereas a full decode is refused up front by the allocation limit.
    let msg = err_msg(image_ops::decode_rgb(&png));
    assert!(msg.contains("would need more than 512 MiB"), "{msg}");

    // A real PNG cut inside its pixel data: header intact, pixels not.
    let full = encode_rgb(&gradient(64, 64), ImageFormat::Png);
    let cut = &full[..full.len() - 40];
    assert_eq!(image_probe::probe(cut).unwrap().width, 64);
    assert!(image_ops::decode_rgb(cut).is_err());
}

#[test]
fn probe_refuses_huge_declared_dimensions() {
    let png = png_with_header(60_000, 60_000, 8, 2);
    let msg = err_msg(image_probe::probe(&png));
    assert_eq!(
        msg,
        "invalid image: PNG dimensions exceed the 16384x16384 limit"
    );
    let msg = err_msg(image_ops::decode_rgb(&png));
    assert!(msg.contains("16384x16384"), "{msg}");
    let msg = err_msg(image_ops::resize(&png, 10, 10));
    assert!(msg.contains("16384x16384"), "{msg}");
    // One side over the limit is enough.
    let png = png_with_header(16_385, 1, 8, 2);
    assert!(image_probe::probe(&png).is_err());
}

#[test]
fn probe_errors_on_garbage() {
    assert_eq!(
        err_msg(image_probe::probe(&[])),
        "invalid image: empty input"
    );
    let mut rng = Lcg(7);
    let noise: Vec<u8> = (0..1000).map(|_| rng.next() as u8).collect();
    assert_eq!(
        err_msg(image_probe::probe(&noise)),
        "invalid image: unrecognised format"
    );
    assert_eq!(
        err_msg(image_probe::probe(b"hello world")),
        "invalid image: unrecognised format"
    );
    // Sniffable but not compiled in: ICO magic.
    let msg = err_msg(image_probe::probe(&[0, 0, 1, 0, 1, 0, 16, 16, 0, 0, 0, 0]));
    assert!(msg.contains("ICO images are not supported"), "{msg}");
}

#[test]
fn truncated_input_says_truncated() {
    let full = encode_rgb(&gradient(32, 32), ImageFormat::Png);
    let msg = err_msg(image_probe::probe(&full[..20]));
    assert_eq!(msg, "invalid image: truncated PNG data");
    let msg = err_msg(image_ops::decode_rgb(&full[..full.len() / 2]));
    assert_eq!(msg, "invalid image: truncated PNG data");
    let jpeg = encode_rgb(&gradient(32, 32), ImageFormat::Jpeg);
    let msg = err_msg(image_probe::probe(&jpeg[..40]));
    assert_eq!(msg, "invalid image: truncated JPEG data");
    let webp = encode_rgb(&gradient(32, 32), ImageFormat::WebP);
    let msg = err_msg(image_ops::decode_rgb(&webp[..webp.len() / 2]));
    assert_eq!(msg, "invalid image: truncated WebP data");
}

#[test]
fn media_error_is_a_std_error() {
    let e: Box<dyn std::error::Error> = Box::new(MediaError::invalid("x"));
    assert_eq!(e.to_string(), "x");
}

// ---------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------

#[test]
fn decode_every_format_to_rgb() {
    let img = gradient(40, 30);
    for (fmt, name) in ALL_FORMATS {
        let bytes = encode_rgb(&img, fmt);
        let hwc = image_ops::decode_rgb(&bytes).unwrap();
        assert_eq!((hwc.width, hwc.height, hwc.channels), (40, 30, 3), "{name}");
        assert_eq!(hwc.data.len(), 40 * 30 * 3, "{name}");
        if matches!(fmt, ImageFormat::Png | ImageFormat::Bmp | ImageFormat::Tiff) {
            assert_eq!(hwc.data, img.as_raw().as_slice(), "{name} is lossless");
        }
    }
}

#[test]
fn decode_converts_grey_alpha_and_16_bit() {
    // Greyscale PNG and JPEG.
    let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(5, 4, image::Luma([100])));
    for fmt in [ImageFormat::Png, ImageFormat::Jpeg] {
        let hwc = image_ops::decode_rgb(&encode_dyn(&grey, fmt)).unwrap();
        assert_eq!((hwc.width, hwc.height), (5, 4));
        for &v in &hwc.data {
            assert_close(v, 100, 2, "grey");
        }
    }

    // RGBA: alpha is dropped, colour kept.
    let rgba = DynamicImage::ImageRgba8(RgbaImage::from_pixel(3, 2, Rgba([10, 20, 30, 40])));
    for fmt in [ImageFormat::Png, ImageFormat::WebP, ImageFormat::Tiff] {
        let hwc = image_ops::decode_rgb(&encode_dyn(&rgba, fmt)).unwrap();
        assert_eq!(hwc.data, [10, 20, 30].repeat(6), "{fmt:?}");
    }

    // 16-bit RGB and grey+alpha 16-bit PNG.
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(2, 2, Rgb([0xffff, 0x8080, 0]));
    let hwc = image_ops::decode_rgb(&encode_dyn(
        &DynamicImage::ImageRgb16(rgb16),
        ImageFormat::Png,
    ))
    .unwrap();
    assert_eq!(hwc.data, [255, 128, 0].repeat(4));
    let la16: ImageBuffer<image::LumaA<u16>, Vec<u16>> =
        ImageBuffer::from_pixel(2, 1, image::LumaA([0x4040, 0xffff]));
    let hwc = image_ops::decode_rgb(&encode_dyn(
        &DynamicImage::ImageLumaA16(la16),
        ImageFormat::Png,
    ))
    .unwrap();
    assert_eq!(hwc.data, [64, 64, 64].repeat(2));
}

// ---------------------------------------------------------------------------
// resize / encode
// ---------------------------------------------------------------------------

#[test]
fn resize_keeps_format_size_and_colour() {
    let colour = [200, 100, 50];
    let img = solid(64, 48, colour);
    for (fmt, name) in ALL_FORMATS {
        let out = image_ops::resize(&encode_rgb(&img, fmt), 17, 9).unwrap();
        let info = image_probe::probe(&out).unwrap();
        assert_eq!((info.format, info.width, info.height), (name, 17, 9));
        let hwc = image_ops::decode_rgb(&out).unwrap();
        // JPEG is lossy twice (fixture + output); GIF quantises the palette.
        let tol = match fmt {
            ImageFormat::Jpeg | ImageFormat::Gif => 4,
            _ => 2,
        };
        for px in hwc.data.chunks_exact(3) {
            for (got, want) in px.iter().zip(colour) {
                assert_close(*got, want, tol, name);
            }
        }
    }
}

#[test]
fn resize_rgb_up_and_down() {
    let src =
        image_ops::decode_rgb(&encode_rgb(&solid(10, 10, [1, 2, 3]), ImageFormat::Png)).unwrap();
    let up = image_ops::resize_rgb(&src, 31, 7).unwrap();
    assert_eq!((up.width, up.height, up.data.len()), (31, 7, 31 * 7 * 3));
    assert!(up.data.chunks_exact(3).all(|p| p == [1, 2, 3]));
    let same = image_ops::resize_rgb(&src, 10, 10).unwrap();
    assert_eq!(same, src);
}

#[test]
fn resize_rejects_bad_targets_and_bad_hwc() {
    let png = encode_rgb(&solid(4, 4, [0, 0, 0]), ImageFormat::Png);
    for (w, h) in [(0, 5), (5, 0), (0, 0)] {
        let msg = err_msg(image_ops::resize(&png, w, h));
        assert!(
            msg.starts_with("image_resize: width and height must be positive"),
            "{msg}"
        );
    }
    let msg = err_msg(image_ops::resize(&png, 100_000, 100_000));
    assert!(msg.contains("exceeds the 16384x16384 limit"), "{msg}");
    let msg = err_msg(image_ops::resize(&png, 16_384, 16_384));
    assert!(msg.contains("more than 512 MiB"), "{msg}");

    let good = image_ops::decode_rgb(&png).unwrap();
    assert!(image_ops::resize_rgb(&good, 0, 1).is_err());
    let short = Hwc {
        data: vec![0; 5],
        ..good.clone()
    };
    assert!(err_msg(image_ops::resize_rgb(&short, 2, 2)).contains("does not match"));
    let rgba = Hwc {
        channels: 4,
        ..good.clone()
    };
    assert!(err_msg(image_ops::resize_rgb(&rgba, 2, 2)).contains("3-channel"));
    let empty = Hwc {
        width: 0,
        height: 0,
        channels: 3,
        data: vec![],
    };
    assert!(image_ops::resize_rgb(&empty, 2, 2).is_err());
    assert!(image_ops::encode(&short, "png").is_err());
}

#[test]
fn encode_names() {
    let hwc = image_ops::decode_rgb(&encode_rgb(&gradient(8, 8), ImageFormat::Png)).unwrap();
    for (_, name) in ALL_FORMATS {
        let out = image_ops::encode(&hwc, &name.to_uppercase()).unwrap();
        assert_eq!(image_probe::probe(&out).unwrap().format, name);
    }
    let msg = err_msg(image_ops::encode(&hwc, "avif"));
    assert!(msg.contains("unsupported output format 'avif'"), "{msg}");
}

// ---------------------------------------------------------------------------
// crop
// ---------------------------------------------------------------------------

#[test]
fn crop_picks_the_right_pixels() {
    let img = gradient(100, 100);
    let png = encode_rgb(&img, ImageFormat::Png);
    let out = image_ops::crop(&png, 10, 20, 30, 40).unwrap();
    assert_eq!(image_probe::probe(&out).unwrap().format, "png");
    let hwc = image_ops::decode_rgb(&out).unwrap();
    assert_eq!((hwc.width, hwc.height), (30, 40));
    for (i, px) in hwc.data.chunks_exact(3).enumerate() {
        let (cx, cy) = ((i % 30) as u32, (i / 30) as u32);
        assert_eq!(px, img.get_pixel(10 + cx, 20 + cy).0, "at ({cx},{cy})");
    }
    // Touching the bottom-right corner exactly is allowed.
    let out = image_ops::crop(&png, 70, 60, 30, 40).unwrap();
    let hwc = image_ops::decode_rgb(&out).unwrap();
    assert_eq!(
        hwc.data.get(hwc.data.len() - 3..),
        Some(&[99u8, 99, 198][..])
    );
    // Format follows the input.
    let jpeg = encode_rgb(&img, ImageFormat::Jpeg);
    let out = image_ops::crop(&jpeg, 0, 0, 5, 5).unwrap();
    assert_eq!(image_probe::probe(&out).unwrap().format, "jpeg");
}

#[test]
fn crop_rejects_rectangles_outside_the_image() {
    let png = encode_rgb(&gradient(100, 100), ImageFormat::Png);
    assert_eq!(
        err_msg(image_ops::crop(&png, 95, 0, 10, 10)),
        "image_crop: rectangle 10x10 at (95,0) lies outside the 100x100 image"
    );
    assert!(image_ops::crop(&png, 0, 91, 10, 10).is_err());
    assert!(image_ops::crop(&png, u32::MAX, 0, 10, 10).is_err());
    assert!(image_ops::crop(&png, 0, 0, u32::MAX, u32::MAX).is_err());
    assert!(image_ops::crop(&png, 0, 0, 101, 1).is_err());
    assert!(err_msg(image_ops::crop(&png, 0, 0, 0, 10)).contains("must be positive"));
    assert!(err_msg(image_ops::crop(&png, 0, 0, 10, 0)).contains("must be positive"));
}

// ---------------------------------------------------------------------------
// thumbnail
// ---------------------------------------------------------------------------

#[test]
fn thumbnail_keeps_aspect_and_never_upscales() {
    let cases = [
        ((400, 100), 100, (100, 25)),
        ((100, 400), 100, (25, 100)),
        ((50, 30), 100, (50, 30)),
        ((1000, 1), 100, (100, 1)),
        ((1, 1000), 100, (1, 100)),
        ((300, 200), 100, (100, 67)),
        ((200, 200), 64, (64, 64)),
    ];
    for ((w, h), max, want) in cases {
        let bytes = encode_rgb(&solid(w, h, [9, 9, 9]), ImageFormat::Png);
        let out = image_ops::thumbnail(&bytes, max).unwrap();
        let info = image_probe::probe(&out).unwrap();
        assert_eq!((info.width, info.height), want, "{w}x{h} max {max}");
    }
    let bytes = encode_rgb(&solid(8, 8, [0, 0, 0]), ImageFormat::Gif);
    assert_eq!(
        image_probe::probe(&image_ops::thumbnail(&bytes, 4).unwrap())
            .unwrap()
            .format,
        "gif"
    );
    assert!(err_msg(image_ops::thumbnail(&bytes, 0)).contains("max_side must be positive"));
}

// ---------------------------------------------------------------------------
// to_tensor
// ---------------------------------------------------------------------------

#[test]
fn to_tensor_known_colour() {
    let png = encode_rgb(&solid(8, 8, [255, 0, 128]), ImageFormat::Png);
    let mean = [0.5, 0.5, 0.5];
    let std = [0.5, 0.25, 2.0];
    let expect = [1.0f32, -2.0, (128.0 / 255.0 - 0.5) / 2.0];

    // Same size: no resampling, so values are exact up to float rounding.
    let t = image_ops::to_tensor(&png, 8, 8, mean, std).unwrap();
    assert_eq!(t.len(), 3 * 8 * 8);
    for (c, plane) in t.chunks_exact(64).enumerate() {
        for v in plane {
            assert!((v - expect[c]).abs() < 1e-5, "channel {c}: {v}");
        }
    }

    // Resized (and non-square) output: channel-major, 3*h*w long, colour kept.
    let t = image_ops::to_tensor(&png, 5, 3, mean, std).unwrap();
    assert_eq!(t.len(), 3 * 3 * 5);
    for (c, plane) in t.chunks_exact(15).enumerate() {
        for v in plane {
            assert!(
                (v - expect[c]).abs() <= 2.0 / 255.0 / std[c],
                "channel {c}: {v}"
            );
        }
    }
}

#[test]
fn to_tensor_layout_is_chw() {
    let img = gradient(7, 5);
    let png = encode_rgb(&img, ImageFormat::Png);
    let mean = [0.485, 0.456, 0.406];
    let std = [0.229, 0.224, 0.225];
    let t = image_ops::to_tensor(&png, 7, 5, mean, std).unwrap();
    for c in 0..3 {
        for y in 0..5u32 {
            for x in 0..7u32 {
                let p = f32::from(img.get_pixel(x, y).0[c]);
                let want = (p / 255.0 - mean[c]) / std[c];
                let got = t[c * 35 + (y * 7 + x) as usize];
                assert!((got - want).abs() < 1e-5, "c{c} ({x},{y}): {got} vs {want}");
            }
        }
    }
}

#[test]
fn to_tensor_rejects_bad_arguments() {
    let png = encode_rgb(&solid(4, 4, [1, 1, 1]), ImageFormat::Png);
    let m = [0.0; 3];
    let msg = err_msg(image_ops::to_tensor(&png, 4, 4, m, [1.0, 0.0, 1.0]));
    assert!(
        msg.contains("std values must be finite and non-zero"),
        "{msg}"
    );
    assert!(image_ops::to_tensor(&png, 4, 4, m, [f32::NAN, 1.0, 1.0]).is_err());
    assert!(image_ops::to_tensor(&png, 4, 4, [f32::INFINITY, 0.0, 0.0], [1.0; 3]).is_err());
    assert!(image_ops::to_tensor(&png, 0, 4, m, [1.0; 3]).is_err());
    assert!(image_ops::to_tensor(&png, 4, 0, m, [1.0; 3]).is_err());
    assert!(image_ops::to_tensor(&[], 4, 4, m, [1.0; 3]).is_err());
    // 16384^2 * 3 floats = 3 GiB: refused before decoding.
    assert!(err_msg(image_ops::to_tensor(&png, 16_384, 16_384, m, [1.0; 3])).contains("MiB"));
}

// ---------------------------------------------------------------------------
// Robustness: truncation and corruption never panic
// ---------------------------------------------------------------------------

/// Runs every entry point on `bytes`; any outcome but a panic is acceptable.
fn exercise(bytes: &[u8]) {
    let _ = image_probe::probe(bytes);
    let _ = image_ops::decode_rgb(bytes);
    let _ = image_ops::resize(bytes, 5, 3);
}

fn assert_no_panic(label: &str, bytes: &[u8]) {
    let r = catch_unwind(AssertUnwindSafe(|| exercise(bytes)));
    assert!(r.is_ok(), "{label}: panicked");
}

#[test]
fn every_prefix_of_every_format_is_handled() {
    let img = gradient(12, 9);
    for (fmt, name) in ALL_FORMATS {
        let full = encode_rgb(&img, fmt);
        for len in 0..full.len() {
            assert_no_panic(&format!("{name} prefix {len}/{}", full.len()), &full[..len]);
        }
    }
}

#[test]
fn truncated_png_and_jpeg_are_errors_or_ok_never_panics() {
    let img = gradient(16, 16);
    for fmt in [ImageFormat::Png, ImageFormat::Jpeg] {
        let full = encode_rgb(&img, fmt);
        for len in [0, 1, 2, 3, 4, 8, 16, 33, full.len() / 2, full.len() - 1] {
            let cut = &full[..len];
            // A PNG cut inside its pixel data is an error (a cut inside the
            // trailing IEND is not: the pixels are complete, as in Pillow).
            // The JPEG decoder is lenient like libjpeg and may pad a cut scan.
            if fmt == ImageFormat::Png && len <= full.len() / 2 {
                assert!(image_ops::decode_rgb(cut).is_err(), "png len {len}");
            }
            assert_no_panic(&format!("{fmt:?} len {len}"), cut);
        }
        // Header cut short must be an error for both.
        assert!(image_probe::probe(&full[..8]).is_err(), "{fmt:?}");
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let img = gradient(12, 9);
    let mut rng = Lcg(0x5eed);
    for (fmt, name) in ALL_FORMATS {
        let full = encode_rgb(&img, fmt);
        for i in 0..300 {
            let mut bytes = full.clone();
            for _ in 0..=(rng.next() % 4) {
                let pos = (rng.next() as usize) % bytes.len();
                bytes[pos] = rng.next() as u8;
            }
            assert_no_panic(&format!("{name} mutant {i}"), &bytes);
        }
    }
}

#[test]
fn random_bytes_with_valid_magic_never_panic() {
    let magics: [&[u8]; 6] = [
        b"\x89PNG\r\n\x1a\n",
        &[0xff, 0xd8, 0xff],
        b"GIF89a",
        b"RIFF\x20\0\0\0WEBPVP8 ",
        b"BM",
        b"II*\0",
    ];
    let mut rng = Lcg(42);
    for magic in magics {
        for len in [0usize, 1, 7, 30, 200] {
            let mut bytes = magic.to_vec();
            bytes.extend((0..len).map(|_| rng.next() as u8));
            assert_no_panic(&format!("{magic:?}+{len}"), &bytes);
            assert!(image_ops::decode_rgb(&bytes).is_err());
        }
    }
}
