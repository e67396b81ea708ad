//! [`MediaError`]: why an image or audio value could not be read or
//! changed, with the SQLSTATE its kind calls for. The message is shown to
//! the SQL user verbatim, so it always names what was wrong with the input.

use std::fmt;

use datafusion::error::DataFusionError;

use crate::error::{SluiceError, SqlState};

/// What kind of failure a [`MediaError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaErrorKind {
    /// The bytes are not a valid image or audio clip (22P03).
    Invalid,
    /// A valid file in a format or codec Sluice does not handle (0A000).
    Unsupported,
    /// Beyond Sluice's size or duration limits (54000).
    TooLarge,
    /// An argument outside its domain: a size, a crop box, a rate (22023).
    Argument,
    /// A broken invariant inside Sluice or a codec (XX000).
    Internal,
}

/// Error raised by the image and audio codecs and operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaError {
    /// What kind of failure it is.
    pub kind: MediaErrorKind,
    /// What a person reads.
    pub message: String,
}

impl MediaError {
    fn of(kind: MediaErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Bytes that are not a valid image or clip.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::of(MediaErrorKind::Invalid, message)
    }

    /// A format or codec Sluice does not handle.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::of(MediaErrorKind::Unsupported, message)
    }

    /// Beyond a size or duration limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::of(MediaErrorKind::TooLarge, message)
    }

    /// An argument outside its domain.
    pub fn argument(message: impl Into<String>) -> Self {
        Self::of(MediaErrorKind::Argument, message)
    }

    /// A broken invariant.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::of(MediaErrorKind::Internal, message)
    }

    /// The SQLSTATE a client sees.
    pub fn sqlstate(&self) -> SqlState {
        match self.kind {
            MediaErrorKind::Invalid => SqlState::INVALID_BINARY_REPRESENTATION,
            MediaErrorKind::Unsupported => SqlState::FEATURE_NOT_SUPPORTED,
            MediaErrorKind::TooLarge => SqlState::PROGRAM_LIMIT_EXCEEDED,
            MediaErrorKind::Argument => SqlState::INVALID_PARAMETER_VALUE,
            MediaErrorKind::Internal => SqlState::INTERNAL_ERROR,
        }
    }
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for MediaError {}

impl From<MediaError> for DataFusionError {
    fn from(error: MediaError) -> Self {
        SluiceError::new(error.sqlstate(), error.message).into()
    }
}
