//! Header-only image probing for Sluice's image functions.
//!
//! [`probe`] answers "what format is this blob, and how big is it?" by reading
//! only the container header, so `image_format(col)` / `image_width(col)` stay
//! cheap on large tables: no pixel data is decompressed and no pixel buffer is
//! allocated.
//!
//! This module also owns the pieces shared with `image_ops`: the
//! [`MediaError`] type, the decoding limits, the mapping from `image`
//! crate formats to the SQL-visible lower-case names, and the translation of
//! `image` crate errors into messages a SQL user can act on.
//!
//! Every input is treated as hostile: empty, random, truncated or corrupt
//! bytes and headers that declare absurd dimensions all come back as
//! `Err(MediaError)`, never as a panic or a giant allocation.

use std::io::{self, Cursor};

use image::error::LimitErrorKind;
use image::{ImageError, ImageFormat, ImageReader, Limits};

/// Largest width or height, in pixels, that Sluice will probe or decode.
///
/// 16384 covers every camera and scanner image in practice while keeping a
/// single decoded RGB frame under 1 GiB; a header declaring more than this is
/// refused before any pixel buffer exists.
pub const MAX_DIMENSION: u32 = 16_384;

/// Largest pixel buffer, in bytes, that a single decode (or a single operation
/// output) may allocate.
///
/// Matches the `image` crate's own default so behaviour does not change if
/// someone later swaps in `Limits::default()`; it is spelled out here because
/// the limit is part of Sluice's contract, not an implementation detail.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

pub use super::error::MediaError;

/// What [`probe`] learns from an image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Lower-case container format: one of `"jpeg"`, `"png"`, `"gif"`,
    /// `"webp"`, `"bmp"`, `"tiff"`.
    pub format: &'static str,
    /// Width in pixels, as declared by the header (always ≥ 1).
    pub width: u32,
    /// Height in pixels, as declared by the header (always ≥ 1).
    pub height: u32,
}

/// Reads the format and dimensions of an encoded image from its header only.
///
/// No pixel data is decoded. Headers that declare a side larger than
/// [`MAX_DIMENSION`] are rejected so that callers can rely on a successful
/// probe meaning "small enough to be worth decoding". Note that a PNG is read
/// up to its first `IDAT` chunk and a JPEG up to its start-of-scan marker,
/// because that is where those formats finish describing the frame.
pub fn probe(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    let (reader, format) = open_reader(bytes)?;
    // `into_dimensions` builds the decoder (which parses only the header) and
    // applies our limits, so an oversized declaration fails here.
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| image_error(e, format, bytes))?;
    check_nonempty(width, height, format)?;
    Ok(ImageInfo {
        format: format_name(format).unwrap_or("unknown"),
        width,
        height,
    })
}

/// Limits applied to every probe and decode.
///
/// `Limits` is `#[non_exhaustive]`, so it cannot be built with a struct
/// literal; start from the default and overwrite the fields we care about.
pub(crate) fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// A format-sniffed reader over an in-memory blob.
pub(crate) type BlobReader<'a> = ImageReader<Cursor<&'a [u8]>>;

/// Sniffs the format from the magic bytes and returns a limited reader for it.
///
/// Shared by `probe` and the decoders in `image_ops` so every entry point
/// rejects the same inputs with the same messages.
pub(crate) fn open_reader(bytes: &[u8]) -> Result<(BlobReader<'_>, ImageFormat), MediaError> {
    if bytes.is_empty() {
        return Err(MediaError::invalid("invalid image: empty input"));
    }
    // Sniffing content rather than trusting a file name: blobs in a table have
    // no extension, and a mislabelled one should still decode.
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::invalid(format!("invalid image: {e}")))?;
    let format = reader
        .format()
        .ok_or_else(|| MediaError::invalid("invalid image: unrecognised format"))?;
    if format_name(format).is_none() {
        // The sniffer knows more formats than we compile decoders for (ICO,
        // QOI, ...); say so instead of the crate's generic "unsupported".
        return Err(MediaError::invalid(format!(
            "invalid image: {} images are not supported \
             (supported: jpeg, png, gif, webp, bmp, tiff)",
            display_name(format)
        )));
    }
    reader.limits(decode_limits());
    Ok((reader, format))
}

/// SQL-visible lower-case name for the formats this module supports.
pub(crate) fn format_name(format: ImageFormat) -> Option<&'static str> {
    match format {
        ImageFormat::Jpeg => Some("jpeg"),
        ImageFormat::Png => Some("png"),
        ImageFormat::Gif => Some("gif"),
        ImageFormat::WebP => Some("webp"),
        ImageFormat::Bmp => Some("bmp"),
        ImageFormat::Tiff => Some("tiff"),
        _ => None,
    }
}

/// Human-facing spelling of a format inside error messages ("PNG", "WebP").
pub(crate) fn display_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Jpeg => "JPEG".to_owned(),
        ImageFormat::Png => "PNG".to_owned(),
        ImageFormat::Gif => "GIF".to_owned(),
        ImageFormat::WebP => "WebP".to_owned(),
        ImageFormat::Bmp => "BMP".to_owned(),
        ImageFormat::Tiff => "TIFF".to_owned(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// Rejects 0×N images; later stages (resize, tensor) divide by the size.
pub(crate) fn check_nonempty(
    width: u32,
    height: u32,
    format: ImageFormat,
) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::invalid(format!(
            "invalid image: {} header declares an empty {width}x{height} image",
            display_name(format)
        )));
    }
    Ok(())
}

/// Turns an `image` crate error into a message about the user's data.
///
/// The crate's own messages describe decoder internals ("Format error
/// decoding Png: ..."); users mostly need to know whether the blob is cut
/// short, damaged, too large or simply of an unsupported flavour, so we lead
/// with that and keep the decoder's detail in parentheses for bug reports.
/// `bytes` is the original input, consulted only to recognise truncation that
/// the decoder reports as generic corruption.
pub(crate) fn image_error(err: ImageError, format: ImageFormat, bytes: &[u8]) -> MediaError {
    let name = display_name(format);
    let truncated = || MediaError::invalid(format!("invalid image: truncated {name} data"));
    match err {
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError => MediaError::invalid(format!(
                "invalid image: {name} dimensions exceed the \
                 {MAX_DIMENSION}x{MAX_DIMENSION} limit"
            )),
            LimitErrorKind::InsufficientMemory => MediaError::invalid(format!(
                "invalid image: decoding this {name} image would need more than {} MiB",
                MAX_DECODE_BYTES / (1024 * 1024)
            )),
            _ => MediaError::invalid(format!(
                "invalid image: {name} image exceeds limits ({limit})"
            )),
        },
        ImageError::Unsupported(e) => MediaError::invalid(format!(
            "invalid image: unsupported {name} variant ({})",
            clean_detail(&e.to_string())
        )),
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => truncated(),
        other => {
            // Prefer the decoder's own error over the crate's wrapper text,
            // which only repeats the format name.
            let detail = match &other {
                ImageError::Decoding(d) => std::error::Error::source(d)
                    .map_or_else(|| d.to_string(), |src| src.to_string()),
                _ => other.to_string(),
            };
            if looks_truncated(&detail) || riff_truncated(format, bytes) {
                truncated()
            } else {
                MediaError::invalid(format!(
                    "invalid image: corrupt {name} data ({})",
                    clean_detail(&detail)
                ))
            }
        }
    }
}

/// Single-line, bounded version of a decoder message: some decoders embed
/// newlines or whole debug structs, which make poor SQL error text.
fn clean_detail(detail: &str) -> String {
    const MAX_CHARS: usize = 160;
    let flat = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.trim_matches('"');
    if flat.chars().count() > MAX_CHARS {
        let cut: String = flat.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        flat.to_owned()
    }
}

/// The WebP decoder reports a cut-off bitstream as "Corrupt bitstream"; the
/// RIFF header's declared length tells us whether the blob was simply cut.
fn riff_truncated(format: ImageFormat, bytes: &[u8]) -> bool {
    if format != ImageFormat::WebP {
        return false;
    }
    match bytes.get(4..8) {
        Some(&[a, b, c, d]) => {
            let declared = u64::from(u32::from_le_bytes([a, b, c, d])) + 8;
            declared > bytes.len() as u64
        }
        _ => true,
    }
}

/// Decoders report running out of input in their own words (and often wrap
/// it as a format error rather than an `UnexpectedEof` I/O error), so we look
/// for the common phrasings to give the more useful "truncated" message.
fn looks_truncated(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    [
        "eof",
        "end of file",
        "unexpected end",
        "truncated",
        "not enough data",
        "not enough bytes",
        "no more bytes",
        "failed to fill whole buffer",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}
