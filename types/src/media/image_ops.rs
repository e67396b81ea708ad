//! Pixel-level image operations for Sluice: decode, resize, crop, thumbnail,
//! re-encode, and conversion to a normalised CHW `f32` tensor for ML models.
//!
//! Everything works on a single in-memory representation, [`Hwc`] (row-major
//! height × width × 3 `u8` RGB), because that is what both the resize kernel
//! and the tensor layout want. Alpha, palettes, greyscale and 16-bit samples
//! are folded into 8-bit RGB at decode time, matching what Python users get
//! from Pillow's `Image.open(b).convert("RGB")`; the operations that return
//! encoded bytes therefore always return an RGB image.
//!
//! Resampling uses a Catmull-Rom cubic convolution (see [`resize_rgb`]) to
//! match Pillow's default `Image.resize` filter, so tensors computed here line
//! up with the preprocessing the models were trained with.
//!
//! Like `image_probe`, every function treats its input as hostile: malformed
//! bytes, absurd dimensions and invalid arguments produce a [`MediaError`],
//! never a panic.

use std::io::Cursor;

use fast_image_resize::images::{Image as FrImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::bmp::BmpEncoder;
use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::tiff::TiffEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, ImageFormat};

use super::image_probe::{self, MAX_DECODE_BYTES, MAX_DIMENSION, MediaError};

/// JPEG quality used when re-encoding; 90 keeps generation loss invisible for
/// photos while staying well below the size of quality 95–100.
const JPEG_QUALITY: u8 = 90;

/// NeuQuant sampling factor for GIF output (1 = best, 30 = fastest). The crate
/// default of 1 takes seconds on a large frame; 10 is the usual trade-off and
/// the palette difference is not visible on resized images.
const GIF_SPEED: i32 = 10;

/// A decoded image: row-major, height × width × channels, one `u8` per sample.
///
/// Functions in this module only produce and accept `channels == 3` (RGB);
/// the field exists so the layout is self-describing when handed to other
/// code (e.g. Arrow fixed-size lists or ML runtimes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hwc {
    /// Number of rows.
    pub height: u32,
    /// Number of pixels per row.
    pub width: u32,
    /// Samples per pixel (3 for RGB).
    pub channels: u32,
    /// `height * width * channels` samples, row after row.
    pub data: Vec<u8>,
}

impl Hwc {
    /// Verifies that the public fields agree with each other, because callers
    /// can build an `Hwc` by hand and the resize/encode back-ends either
    /// assert on buffer length or would read garbage.
    fn check_rgb(&self, ctx: &str) -> Result<(), MediaError> {
        if self.channels != 3 {
            return Err(MediaError::argument(format!(
                "{ctx}: expected a 3-channel RGB image, got {} channels",
                self.channels
            )));
        }
        if self.width == 0 || self.height == 0 {
            return Err(MediaError::argument(format!(
                "{ctx}: source image is empty ({}x{})",
                self.width, self.height
            )));
        }
        match rgb_len(self.width, self.height) {
            Some(len) if len == self.data.len() => Ok(()),
            _ => Err(MediaError::argument(format!(
                "{ctx}: pixel buffer holds {} bytes, which does not match {}x{}x3",
                self.data.len(),
                self.width,
                self.height
            ))),
        }
    }
}

/// Decodes any supported image to 8-bit RGB.
///
/// Greyscale is replicated to three channels, alpha is dropped (not composited
/// onto a background — the same as Pillow's `convert("RGB")`), 16-bit samples
/// are rounded to 8 bits and palettes are expanded. For animated GIF/WebP only
/// the first frame is returned. EXIF orientation is *not* applied, again
/// matching `Image.open`.
///
/// Decoding is bounded by [`MAX_DIMENSION`] per side and [`MAX_DECODE_BYTES`]
/// for the decoder's output buffer.
pub fn decode_rgb(bytes: &[u8]) -> Result<Hwc, MediaError> {
    decode_with_format(bytes).map(|(hwc, _)| hwc)
}

/// Resizes an RGB image to exactly `width` × `height` (aspect ratio is not
/// preserved).
///
/// The filter is Catmull-Rom cubic convolution (`a = -0.5`), with the kernel
/// widened by the scale factor when shrinking. That is precisely Pillow's
/// `Image.Resampling.BICUBIC`, which has been `Image.resize`'s default for RGB
/// images since Pillow 7 (and still is in Pillow 10/11), so results agree with
/// `Image.open(b).convert("RGB").resize((w, h))` up to rounding. Bilinear
/// would be a little faster but visibly blurrier, and would shift model
/// inputs away from what torchvision/Pillow pipelines produce.
pub fn resize_rgb(src: &Hwc, width: u32, height: u32) -> Result<Hwc, MediaError> {
    resize_hwc(src, width, height, "image_resize")
}

/// Decodes `bytes`, resizes to `width` × `height` (see [`resize_rgb`]) and
/// re-encodes in the input's format (PNG if that format cannot be written).
pub fn resize(bytes: &[u8], width: u32, height: u32) -> Result<Vec<u8>, MediaError> {
    const CTX: &str = "image_resize";
    // Validate the cheap arguments before paying for a decode.
    check_target(width, height, 3, CTX)?;
    let (src, format) = decode_with_format(bytes)?;
    let out = resize_hwc(&src, width, height, CTX)?;
    encode_as(&out, output_format(format))
}

/// Cuts the `width` × `height` rectangle whose top-left corner is at
/// (`x`, `y`) out of the image and re-encodes it in the input's format.
///
/// The rectangle must lie entirely inside the image; it is never clamped,
/// because silently returning a smaller picture would hide bugs in queries.
pub fn crop(bytes: &[u8], x: u32, y: u32, width: u32, height: u32) -> Result<Vec<u8>, MediaError> {
    const CTX: &str = "image_crop";
    if width == 0 || height == 0 {
        return Err(MediaError::argument(format!(
            "{CTX}: width and height must be positive, got {width}x{height}"
        )));
    }
    let (src, format) = decode_with_format(bytes)?;
    let outside = || {
        MediaError::argument(format!(
            "{CTX}: rectangle {width}x{height} at ({x},{y}) lies outside the {}x{} image",
            src.width, src.height
        ))
    };
    // u64 so that e.g. x = u32::MAX cannot wrap around into a "valid" range.
    if u64::from(x) + u64::from(width) > u64::from(src.width)
        || u64::from(y) + u64::from(height) > u64::from(src.height)
    {
        return Err(outside());
    }

    // All three are bounded by the source dimensions checked above, so the
    // multiplications fit in usize; `get` still guards the slicing so a logic
    // slip becomes an error rather than a panic.
    let stride = src.width as usize * 3;
    let start = x as usize * 3;
    let row_len = width as usize * 3;
    let mut data = Vec::with_capacity(row_len * height as usize);
    for row in src
        .data
        .chunks_exact(stride)
        .skip(y as usize)
        .take(height as usize)
    {
        let part = row.get(start..start + row_len).ok_or_else(outside)?;
        data.extend_from_slice(part);
    }
    let out = Hwc {
        height,
        width,
        channels: 3,
        data,
    };
    encode_as(&out, output_format(format))
}

/// Shrinks the image so that its longer side is at most `max_side`, keeping
/// the aspect ratio, and re-encodes it in the input's format.
///
/// Never enlarges: an image that already fits is returned at its original
/// size (still re-encoded, so the output is always RGB in a predictable
/// format). The shorter side is rounded to the nearest pixel and is at
/// least 1, so a 10000×1 strip stays visible.
pub fn thumbnail(bytes: &[u8], max_side: u32) -> Result<Vec<u8>, MediaError> {
    const CTX: &str = "image_thumbnail";
    if max_side == 0 {
        return Err(MediaError::argument(format!(
            "{CTX}: max_side must be positive, got 0"
        )));
    }
    let (src, format) = decode_with_format(bytes)?;
    let (w, h) = thumbnail_size(src.width, src.height, max_side);
    let out = if (w, h) == (src.width, src.height) {
        src
    } else {
        resize_hwc(&src, w, h, CTX)?
    };
    encode_as(&out, output_format(format))
}

/// Encodes an RGB image; `format` is one of the names [`ImageInfo`] reports
/// (`"jpeg"`, `"png"`, `"gif"`, `"webp"`, `"bmp"`, `"tiff"`), case-insensitive.
///
/// JPEG is written at quality 90, PNG with the crate's default compression,
/// WebP losslessly (the only WebP encoder the `image` crate ships), GIF with a
/// NeuQuant palette.
///
/// [`ImageInfo`]: super::image_probe::ImageInfo
pub fn encode(img: &Hwc, format: &str) -> Result<Vec<u8>, MediaError> {
    let fmt = match format.to_ascii_lowercase().as_str() {
        "jpeg" | "jpg" => ImageFormat::Jpeg,
        "png" => ImageFormat::Png,
        "gif" => ImageFormat::Gif,
        "webp" => ImageFormat::WebP,
        "bmp" => ImageFormat::Bmp,
        "tiff" | "tif" => ImageFormat::Tiff,
        _ => {
            return Err(MediaError::argument(format!(
                "image_encode: unsupported output format '{format}' \
                 (supported: jpeg, png, gif, webp, bmp, tiff)"
            )));
        }
    };
    encode_as(img, fmt)
}

/// Decodes, resizes to `width` × `height` and returns a normalised tensor in
/// channel-major (CHW) order: `3 * height * width` values, all of R, then G,
/// then B.
///
/// Each value is `(pixel / 255 - mean[c]) / std[c]`, the torchvision
/// `ToTensor` + `Normalize` convention (ImageNet uses
/// `mean = [0.485, 0.456, 0.406]`, `std = [0.229, 0.224, 0.225]`). It is
/// evaluated as one multiply and one add per sample, so results may differ from
/// the literal formula in the last bit.
pub fn to_tensor(
    bytes: &[u8],
    width: u32,
    height: u32,
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<Vec<f32>, MediaError> {
    const CTX: &str = "image_to_tensor";
    if let Some(bad) = std.iter().find(|s| **s == 0.0 || !s.is_finite()) {
        return Err(MediaError::argument(format!(
            "{CTX}: std values must be finite and non-zero, got {bad}"
        )));
    }
    if let Some(bad) = mean.iter().find(|m| !m.is_finite()) {
        return Err(MediaError::argument(format!(
            "{CTX}: mean values must be finite, got {bad}"
        )));
    }
    check_target(width, height, 3 * std::mem::size_of::<f32>() as u64, CTX)?;

    let src = decode_rgb(bytes)?;
    let img = if (src.width, src.height) == (width, height) {
        src
    } else {
        resize_hwc(&src, width, height, CTX)?
    };
    hwc_to_chw(&img, mean, std, CTX)
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

/// Decodes and also reports the container format, which the re-encoding
/// operations need in order to answer in kind.
fn decode_with_format(bytes: &[u8]) -> Result<(Hwc, ImageFormat), MediaError> {
    let (reader, format) = image_probe::open_reader(bytes)?;
    // `decode` reserves the decoder's output buffer against `max_alloc`
    // before allocating it, so a lying header cannot trigger a huge
    // allocation; dimension limits were installed by `open_reader`.
    let img = reader
        .decode()
        .map_err(|e| image_probe::image_error(e, format, bytes))?;
    // A no-op move for 8-bit RGB sources (the common JPEG case); other
    // layouts pay one conversion pass.
    let rgb = img.into_rgb8();
    let (width, height) = rgb.dimensions();
    image_probe::check_nonempty(width, height, format)?;
    Ok((
        Hwc {
            height,
            width,
            channels: 3,
            data: rgb.into_raw(),
        },
        format,
    ))
}

/// Number of bytes in a `width` × `height` RGB buffer, if it fits in `usize`.
fn rgb_len(width: u32, height: u32) -> Option<usize> {
    (width as usize)
        .checked_mul(height as usize)?
        .checked_mul(3)
}

/// Validates a requested output size: positive, within the per-side limit,
/// and with an output buffer (`bytes_per_pixel` each) within the byte limit,
/// since a SQL argument like `image_resize(img, 100000, 100000)` must not be
/// able to exhaust memory.
fn check_target(
    width: u32,
    height: u32,
    bytes_per_pixel: u64,
    ctx: &str,
) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::argument(format!(
            "{ctx}: width and height must be positive, got {width}x{height}"
        )));
    }
    if width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(MediaError::argument(format!(
            "{ctx}: target size {width}x{height} exceeds the \
             {MAX_DIMENSION}x{MAX_DIMENSION} limit"
        )));
    }
    let bytes = u64::from(width) * u64::from(height) * bytes_per_pixel;
    if bytes > MAX_DECODE_BYTES {
        return Err(MediaError::argument(format!(
            "{ctx}: target size {width}x{height} would need more than {} MiB",
            MAX_DECODE_BYTES / (1024 * 1024)
        )));
    }
    Ok(())
}

/// Shared body of every resize so that each SQL function reports errors
/// under its own name.
fn resize_hwc(src: &Hwc, width: u32, height: u32, ctx: &str) -> Result<Hwc, MediaError> {
    check_target(width, height, 3, ctx)?;
    src.check_rgb(ctx)?;
    if (src.width, src.height) == (width, height) {
        // Convolution with a unit scale is the identity; skip the work.
        return Ok(src.clone());
    }

    let internal =
        |e: &dyn std::fmt::Display| MediaError::internal(format!("{ctx}: resize failed ({e})"));
    // Borrow the source instead of copying it into a resizer-owned image.
    let src_view = ImageRef::new(src.width, src.height, &src.data, PixelType::U8x3)
        .map_err(|e| internal(&e))?;
    let mut dst = FrImage::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
    // A fresh Resizer per call keeps the function re-entrant across query
    // threads; its scratch buffers are small next to the decode itself.
    Resizer::new()
        .resize(&src_view, &mut dst, &options)
        .map_err(|e| internal(&e))?;
    Ok(Hwc {
        height,
        width,
        channels: 3,
        data: dst.into_vec(),
    })
}

/// Output size for [`thumbnail`]: longest side `max_side`, aspect kept,
/// never larger than the source, every side at least 1.
fn thumbnail_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    if width <= max_side && height <= max_side {
        return (width, height);
    }
    // Integer arithmetic in u64 with round-half-up: exact and overflow-free
    // for any u32 inputs, unlike f32 which loses precision above 2^24.
    let scale = |short: u32, long: u32| -> u32 {
        let v = (u64::from(short) * u64::from(max_side) + u64::from(long) / 2) / u64::from(long);
        u32::try_from(v).unwrap_or(max_side).clamp(1, max_side)
    };
    if width >= height {
        (max_side, scale(height, width))
    } else {
        (scale(width, height), max_side)
    }
}

/// Format to answer in: the input's own format whenever we can write it.
fn output_format(input: ImageFormat) -> ImageFormat {
    if can_encode(input) {
        input
    } else {
        ImageFormat::Png
    }
}

/// Formats `encode_as` has an encoder for; kept next to `encode_as` so that
/// adding a decoder without an encoder falls back to PNG instead of failing.
fn can_encode(format: ImageFormat) -> bool {
    matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
    )
}

/// Encodes an RGB image with explicit encoders so that quality and speed
/// settings are ours rather than whatever `DynamicImage::write_to` defaults to.
fn encode_as(img: &Hwc, format: ImageFormat) -> Result<Vec<u8>, MediaError> {
    // Encoders assert on buffer length, so validate before handing it over.
    img.check_rgb("image_encode")?;
    let format = output_format(format);
    let (w, h) = (img.width, img.height);
    let color = ExtendedColorType::Rgb8;
    // TIFF needs Seek to patch offsets after writing strips; a Cursor gives
    // every encoder what it needs.
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        ImageFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
            .write_image(&img.data, w, h, color),
        ImageFormat::Gif => {
            GifEncoder::new_with_speed(&mut out, GIF_SPEED).write_image(&img.data, w, h, color)
        }
        ImageFormat::WebP => {
            WebPEncoder::new_lossless(&mut out).write_image(&img.data, w, h, color)
        }
        ImageFormat::Bmp => BmpEncoder::new(&mut out).write_image(&img.data, w, h, color),
        ImageFormat::Tiff => TiffEncoder::new(&mut out).write_image(&img.data, w, h, color),
        _ => PngEncoder::new(&mut out).write_image(&img.data, w, h, color),
    };
    result.map_err(|e| {
        MediaError::argument(format!(
            "image_encode: could not write {} ({e})",
            image_probe::display_name(format)
        ))
    })?;
    Ok(out.into_inner())
}

/// HWC `u8` → normalised CHW `f32`.
///
/// Written as zipped iterators over exact-size chunks so there is no bounds
/// check in the loop body and LLVM can vectorise the u8→f32 convert and the
/// multiply-add; the stride-3 de-interleave is the only non-contiguous access.
fn hwc_to_chw(img: &Hwc, mean: [f32; 3], std: [f32; 3], ctx: &str) -> Result<Vec<f32>, MediaError> {
    img.check_rgb(ctx)?;
    let plane = img.width as usize * img.height as usize;
    let mut out = vec![0.0f32; plane * 3];

    // (p/255 - m)/s == p * (1/(255 s)) + (-m/s): hoist the divisions out of
    // the per-pixel loop.
    let [mr, mg, mb] = mean;
    let [s_r, s_g, s_b] = std;
    let (sr, sg, sb) = (
        1.0 / (255.0 * s_r),
        1.0 / (255.0 * s_g),
        1.0 / (255.0 * s_b),
    );
    let (br, bg, bb) = (-mr / s_r, -mg / s_g, -mb / s_b);

    let split = |e: &str| MediaError::internal(format!("{ctx}: internal error: {e}"));
    let (r_plane, rest) = out
        .split_at_mut_checked(plane)
        .ok_or_else(|| split("tensor buffer too small"))?;
    let (g_plane, b_plane) = rest
        .split_at_mut_checked(plane)
        .ok_or_else(|| split("tensor buffer too small"))?;

    for (((px, r), g), b) in img
        .data
        .chunks_exact(3)
        .zip(r_plane.iter_mut())
        .zip(g_plane.iter_mut())
        .zip(b_plane.iter_mut())
    {
        // chunks_exact(3) guarantees the pattern matches; destructuring
        // avoids any indexing in the hot loop.
        if let &[pr, pg, pb] = px {
            // Plain `a * b + c`, not `mul_add`: without a compile-time FMA
            // target feature `mul_add` becomes a libm call per sample and
            // blocks vectorisation.
            *r = f32::from(pr) * sr + br;
            *g = f32::from(pg) * sg + bg;
            *b = f32::from(pb) * sb + bb;
        }
    }
    Ok(out)
}
