//! `OBJECT_REF` values: a reference to a blob in object storage (its URI
//! and what a HEAD request says of it), never the bytes themselves; the
//! functions that need the bytes read them when they run.
//!
//! Storage: `Struct{uri, size, etag, version, content_type, last_modified}`
//! with every field but `uri` nullable (a reference written as text may
//! not have been looked up). The text form is a JSON object of the known
//! fields, `{"uri":"s3://b/cat.jpg","size":1234,"etag":"\"9b2c\""}`; input
//! accepts that or a bare URI.

use std::sync::Arc;

use crate::error::{SluiceError, SqlState};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Builder, StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Field, Fields, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use datafusion::error::{DataFusionError, Result};

/// What is known of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    /// `file:///…` or `s3://bucket/key`.
    pub uri: String,
    /// Size in bytes.
    pub size: Option<i64>,
    /// The store's entity tag.
    pub etag: Option<String>,
    /// The store's version id (versioned buckets).
    pub version: Option<String>,
    /// MIME type, from the store or guessed from the name.
    pub content_type: Option<String>,
    /// Last modification, microseconds since the epoch (UTC).
    pub last_modified: Option<i64>,
}

/// The fields of the storage struct.
pub fn fields() -> Fields {
    Fields::from(vec![
        Field::new("uri", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new("etag", DataType::Utf8, true),
        Field::new("version", DataType::Utf8, true),
        Field::new("content_type", DataType::Utf8, true),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ])
}

/// The storage type.
pub fn storage() -> DataType {
    DataType::Struct(fields())
}

/// Storage for `refs` (`None` = NULL).
pub fn object_ref_array(refs: &[Option<ObjectRef>]) -> Result<ArrayRef> {
    let n = refs.len();
    let mut uri = StringBuilder::with_capacity(n, n * 32);
    let mut size = Int64Builder::with_capacity(n);
    let mut etag = StringBuilder::new();
    let mut version = StringBuilder::new();
    let mut content_type = StringBuilder::new();
    let mut modified = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for r in refs {
        let r = r.as_ref();
        uri.append_value(r.map_or("", |r| r.uri.as_str()));
        size.append_option(r.and_then(|r| r.size));
        etag.append_option(r.and_then(|r| r.etag.as_deref()));
        version.append_option(r.and_then(|r| r.version.as_deref()));
        content_type.append_option(r.and_then(|r| r.content_type.as_deref()));
        modified.append_option(r.and_then(|r| r.last_modified));
    }
    let nulls = refs
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(refs.iter().map(Option::is_some)));
    Ok(Arc::new(StructArray::try_new(
        fields(),
        vec![
            Arc::new(uri.finish()),
            Arc::new(size.finish()),
            Arc::new(etag.finish()),
            Arc::new(version.finish()),
            Arc::new(content_type.finish()),
            Arc::new(modified.finish()),
        ],
        nulls,
    )?))
}

/// The reference at `idx` of `values` (`None` when NULL).
pub fn object_ref_at(values: &dyn Array, idx: usize) -> Result<Option<ObjectRef>> {
    if values.is_null(idx) {
        return Ok(None);
    }
    let parts = values.as_struct_opt().ok_or_else(|| {
        DataFusionError::Internal(format!("object_ref stored as {}", values.data_type()))
    })?;
    let text = |name: &str| -> Option<String> {
        let column = parts.column_by_name(name)?;
        let strings = column.as_string_opt::<i32>()?;
        (!strings.is_null(idx)).then(|| strings.value(idx).to_owned())
    };
    let uri = text("uri")
        .ok_or_else(|| DataFusionError::Internal("object_ref without its uri".into()))?;
    let size = parts
        .column_by_name("size")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .and_then(|c| (!c.is_null(idx)).then(|| c.value(idx)));
    let last_modified = parts
        .column_by_name("last_modified")
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .and_then(|c| (!c.is_null(idx)).then(|| c.value(idx)));
    Ok(Some(ObjectRef {
        uri,
        size,
        etag: text("etag"),
        version: text("version"),
        content_type: text("content_type"),
        last_modified,
    }))
}

/// Appends the JSON text form of `r`.
pub fn format_object_ref(r: &ObjectRef, out: &mut String) {
    let mut object = serde_json::Map::new();
    object.insert("uri".into(), r.uri.clone().into());
    if let Some(size) = r.size {
        object.insert("size".into(), size.into());
    }
    for (key, value) in [
        ("etag", &r.etag),
        ("version", &r.version),
        ("content_type", &r.content_type),
    ] {
        if let Some(value) = value {
            object.insert(key.into(), value.clone().into());
        }
    }
    if let Some(micros) = r.last_modified
        && let Some(time) = chrono::DateTime::from_timestamp_micros(micros)
    {
        object.insert(
            "last_modified".into(),
            time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                .into(),
        );
    }
    out.push_str(&serde_json::Value::Object(object).to_string());
}

/// Parses the text form: the JSON object [`format_object_ref`] writes, or
/// a bare URI (whose metadata is then unknown).
pub fn parse_object_ref(text: &str) -> Result<ObjectRef> {
    let trimmed = text.trim();
    let invalid = |why: &str| {
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type object_ref: \"{text}\": {why}"),
        ))
    };
    if !trimmed.starts_with('{') {
        if !trimmed.contains("://") {
            return Err(invalid(
                "expected a URI such as s3://bucket/key or file:///path",
            ));
        }
        return Ok(ObjectRef {
            uri: trimmed.to_owned(),
            ..ObjectRef::default()
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(trimmed).map_err(|_| invalid("not a JSON object"))?;
    let field = |name: &str| value.get(name).filter(|v| !v.is_null());
    let text_field = |name: &str| -> Result<Option<String>> {
        field(name)
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(&format!("{name} must be a string")))
            })
            .transpose()
    };
    let uri = text_field("uri")?.ok_or_else(|| invalid("uri is missing"))?;
    let size = field("size")
        .map(|v| v.as_i64().ok_or_else(|| invalid("size must be an integer")))
        .transpose()?;
    let last_modified = text_field("last_modified")?
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| d.timestamp_micros())
                .map_err(|_| invalid("last_modified must be an RFC 3339 time"))
        })
        .transpose()?;
    Ok(ObjectRef {
        uri,
        size,
        etag: text_field("etag")?,
        version: text_field("version")?,
        content_type: text_field("content_type")?,
        last_modified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_storage_round_trip() {
        let full = ObjectRef {
            uri: "s3://bucket/cat.jpg".into(),
            size: Some(1234),
            etag: Some("\"9b2c\"".into()),
            version: None,
            content_type: Some("image/jpeg".into()),
            last_modified: Some(1_700_000_000_000_000),
        };
        let mut text = String::new();
        format_object_ref(&full, &mut text);
        assert_eq!(
            text,
            r#"{"uri":"s3://bucket/cat.jpg","size":1234,"etag":"\"9b2c\"","content_type":"image/jpeg","last_modified":"2023-11-14T22:13:20Z"}"#
        );
        assert_eq!(parse_object_ref(&text).unwrap(), full);
        let bare = parse_object_ref(" file:///data/a.png ").unwrap();
        assert_eq!(bare.uri, "file:///data/a.png");
        let array = object_ref_array(&[Some(full.clone()), None, Some(bare.clone())]).unwrap();
        assert_eq!(object_ref_at(array.as_ref(), 0).unwrap(), Some(full));
        assert_eq!(object_ref_at(array.as_ref(), 1).unwrap(), None);
        assert_eq!(object_ref_at(array.as_ref(), 2).unwrap(), Some(bare));
    }

    #[test]
    fn bad_text_is_refused() {
        for (text, message) in [
            ("cat.jpg", "expected a URI"),
            ("{\"size\": 3}", "uri is missing"),
            (
                "{\"uri\": \"s3://b/k\", \"size\": \"big\"}",
                "size must be an integer",
            ),
            ("{", "not a JSON object"),
        ] {
            let err = parse_object_ref(text).unwrap_err().to_string();
            assert!(err.contains(message), "{text}: {err}");
        }
    }
}
