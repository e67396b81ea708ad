//! Image and audio functions over `IMAGE` and `AUDIO` values:
//!
//! - header properties, read from the value's own fields without decoding:
//!   `image_width`, `image_height`, `image_format`, `audio_sample_rate`,
//!   `audio_channels`, `audio_duration`, `audio_format`;
//! - image transforms returning images (re-encoded in their own format):
//!   `image_resize(img, w, h)`, `image_crop(img, x, y, w, h)`,
//!   `image_thumbnail(img, max_side)`;
//! - conversions to tensors ready for a model: `image_decode(img)` (HWC
//!   uint8), `image_to_tensor(img, w, h[, mean, std])` (CHW float32, shape
//!   `[3,h,w]` known at planning when `w` and `h` are constants) and
//!   `audio_to_tensor(audio[, rate[, mono]])` (`[channels, frames]` float32).
//!
//! The codecs live in `sluice_types::media`; this module maps them over
//! batches. Each row is independent, so a failing row fails the query with
//! the row's own message (corrupt or truncated data: SQLSTATE 22P03).

pub(crate) mod arguments;
pub mod audio;
pub mod image;
pub mod properties;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

/// Registers every media function.
pub fn register(ctx: &SessionContext) {
    let functions: Vec<ScalarUDF> = properties::all()
        .into_iter()
        .chain(image::all())
        .chain(audio::all())
        .collect();
    for udf in functions {
        crate::register_replacing(ctx, udf);
    }
}
