//! `IMAGE` and `AUDIO` values: the encoded bytes as they were given plus
//! what their header says (format, size; sample rate, channels, duration),
//! read once when a value is made so that `image_width(img)` or
//! `audio_duration(a)` never decode anything.
//!
//! Both are structs whose first field, `data`, holds the encoded bytes;
//! on the wire they are `bytea` (see the `wire` module).

use std::sync::Arc;

use crate::error::{SluiceError, SqlState};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, Float64Builder, StringBuilder, StructArray,
    UInt16Builder, UInt32Builder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::error::{DataFusionError, Result};

#[cfg(test)]
mod audio_format_tests;
pub mod audio_ops;
pub mod audio_probe;
pub mod error;
pub mod image_ops;
pub mod image_probe;
#[cfg(test)]
mod image_tests;

pub use audio_probe::AudioInfo;
pub use image_probe::ImageInfo;

/// The fields of `IMAGE` storage.
pub fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("data", DataType::Binary, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
    ])
}

/// The fields of `AUDIO` storage.
pub fn audio_fields() -> Fields {
    Fields::from(vec![
        Field::new("data", DataType::Binary, false),
        Field::new("format", DataType::Utf8, false),
        Field::new("sample_rate", DataType::UInt32, false),
        Field::new("channels", DataType::UInt16, false),
        // Unknown for streams whose container does not state a length.
        Field::new("duration", DataType::Float64, true),
    ])
}

/// Reads an image's header, as an SQL error when it is not an image.
pub fn probe_image(bytes: &[u8]) -> Result<ImageInfo> {
    image_probe::probe(bytes).map_err(DataFusionError::from)
}

/// Reads an audio stream's header, as an SQL error when it is not audio.
pub fn probe_audio(bytes: &[u8]) -> Result<AudioInfo> {
    audio_probe::probe(bytes).map_err(DataFusionError::from)
}

/// `IMAGE` storage from encoded images (`None` = NULL), probing each.
pub fn image_array<'a>(
    images: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Result<ArrayRef> {
    let n = images.len();
    let mut data = BinaryBuilder::with_capacity(n, 0);
    let mut format = StringBuilder::with_capacity(n, n * 4);
    let mut width = UInt32Builder::with_capacity(n);
    let mut height = UInt32Builder::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for image in images {
        match image {
            Some(bytes) => {
                let info = probe_image(bytes)?;
                data.append_value(bytes);
                format.append_value(info.format);
                width.append_value(info.width);
                height.append_value(info.height);
                valid.push(true);
            }
            None => {
                data.append_value([]);
                format.append_value("");
                width.append_value(0);
                height.append_value(0);
                valid.push(false);
            }
        }
    }
    Ok(Arc::new(StructArray::try_new(
        image_fields(),
        vec![
            Arc::new(data.finish()),
            Arc::new(format.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
        ],
        nulls(valid),
    )?))
}

/// `AUDIO` storage from encoded audio (`None` = NULL), probing each.
pub fn audio_array<'a>(clips: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> Result<ArrayRef> {
    let n = clips.len();
    let mut data = BinaryBuilder::with_capacity(n, 0);
    let mut format = StringBuilder::with_capacity(n, n * 4);
    let mut rate = UInt32Builder::with_capacity(n);
    let mut channels = UInt16Builder::with_capacity(n);
    let mut duration = Float64Builder::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    for clip in clips {
        match clip {
            Some(bytes) => {
                let info = probe_audio(bytes)?;
                data.append_value(bytes);
                format.append_value(info.format);
                rate.append_value(info.sample_rate);
                channels.append_value(info.channels);
                duration.append_option(info.duration_seconds);
                valid.push(true);
            }
            None => {
                data.append_value([]);
                format.append_value("");
                rate.append_value(0);
                channels.append_value(0);
                duration.append_null();
                valid.push(false);
            }
        }
    }
    Ok(Arc::new(StructArray::try_new(
        audio_fields(),
        vec![
            Arc::new(data.finish()),
            Arc::new(format.finish()),
            Arc::new(rate.finish()),
            Arc::new(channels.finish()),
            Arc::new(duration.finish()),
        ],
        nulls(valid),
    )?))
}

/// `media` with every value whose header `ty` (`IMAGE` or `AUDIO`) cannot
/// read replaced by NULL: the lenient conversion behind
/// `TRY_CAST(bytes AS IMAGE)`, for pipelines that skip bad files.
pub fn readable_or_null(ty: crate::SluiceType, media: Vec<Option<&[u8]>>) -> Vec<Option<&[u8]>> {
    media
        .into_iter()
        .map(|m| {
            m.filter(|bytes| match ty {
                crate::SluiceType::Image => image_probe::probe(bytes).is_ok(),
                crate::SluiceType::Audio => audio_probe::probe(bytes).is_ok(),
                _ => true,
            })
        })
        .collect()
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    valid.iter().any(|v| !v).then(|| NullBuffer::from(valid))
}

/// The encoded bytes of the non-null image or audio value at `idx`.
pub fn encoded_bytes(values: &dyn Array, idx: usize) -> Result<&[u8]> {
    values
        .as_struct_opt()
        .and_then(|s| s.column_by_name("data"))
        .and_then(|c| c.as_binary_opt::<i32>())
        .map(|b| b.value(idx))
        .ok_or_else(|| DataFusionError::Internal(format!("media stored as {}", values.data_type())))
}

/// Appends Postgres's `bytea` hex text form (`\x89504e47…`).
pub fn format_bytea(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// Parses `bytea` text: the hex form `\x…` (what Postgres and drivers
/// send). The older escape form is refused with a clear message.
pub fn parse_bytea(text: &str) -> Result<Vec<u8>> {
    let invalid = |why: &str| {
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid bytea text: {why}"),
        ))
    };
    let hex = text
        .strip_prefix("\\x")
        .ok_or_else(|| invalid("expected the hex form \\x…"))?;
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(invalid("odd number of hex digits"));
    }
    let nibble = |c: u8| -> Result<u8> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| invalid(&format!("\"{}\" is not a hex digit", c as char)))
    };
    digits
        .chunks_exact(2)
        .map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_text_round_trips() {
        let mut text = String::new();
        format_bytea(&[0x89, 0x50, 0x00, 0xff], &mut text);
        assert_eq!(text, "\\x895000ff");
        assert_eq!(parse_bytea(&text).unwrap(), vec![0x89, 0x50, 0x00, 0xff]);
        assert!(parse_bytea("\\x1").is_err());
        assert!(parse_bytea("\\xzz").is_err());
        assert!(parse_bytea("abc").is_err());
    }

    #[test]
    fn non_media_bytes_are_refused() {
        let err = image_array([Some(&b"hello"[..])].into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid image"), "{err}");
        let err = audio_array([Some(&b"hello"[..])].into_iter())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid audio"), "{err}");
    }
}
