//! `object_ref(uri)`, `read_bytes(ref)`, `read_image(ref)` and
//! `read_audio(ref)`: asynchronous scalar functions (DataFusion runs them in
//! their own projection, so their reads overlap with the rest of the
//! query). Each takes an `OBJECT_REF` or a URI as text.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use futures::{StreamExt, TryStreamExt};
use sluice_types::SluiceType;
use sluice_types::object_ref::{ObjectRef, object_ref_array, object_ref_at};

use super::ObjectAccess;

/// What a function makes of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `object_ref(uri)`: its metadata.
    Ref,
    /// `read_bytes(ref)`: its bytes, as `bytea`.
    Bytes,
    /// `read_image(ref)`: its bytes, as an `IMAGE`.
    Image,
    /// `read_audio(ref)`: its bytes, as `AUDIO`.
    Audio,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ref => "object_ref",
            Kind::Bytes => "read_bytes",
            Kind::Image => "read_image",
            Kind::Audio => "read_audio",
        }
    }

    fn output(self, nullable: bool) -> Field {
        match self {
            Kind::Ref => SluiceType::ObjectRef.field(self.name(), nullable),
            Kind::Bytes => Field::new(self.name(), DataType::Binary, nullable),
            Kind::Image => SluiceType::Image.field(self.name(), nullable),
            Kind::Audio => SluiceType::Audio.field(self.name(), nullable),
        }
    }
}

/// One object function over the server's [`ObjectAccess`].
#[derive(Debug)]
struct ObjectFunction {
    kind: Kind,
    access: Arc<ObjectAccess>,
    signature: Signature,
}

impl PartialEq for ObjectFunction {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.access, &other.access)
    }
}

impl Eq for ObjectFunction {}

impl std::hash::Hash for ObjectFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
    }
}

impl ScalarUDFImpl for ObjectFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.kind.output(true).data_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let [source] = args.arg_fields else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.name()
            )));
        };
        let accepted = match SluiceType::of_field(source) {
            Some(SluiceType::ObjectRef) => self.kind != Kind::Ref,
            Some(_) => false,
            None => matches!(
                source.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            ),
        };
        if !accepted {
            return Err(DataFusionError::Plan(format!(
                "{} takes {}, not {}",
                self.name(),
                if self.kind == Kind::Ref {
                    "a URI as text"
                } else {
                    "an object_ref or a URI as text"
                },
                SluiceType::of_field(source)
                    .map_or_else(|| source.data_type().to_string(), |t| t.type_name())
            )));
        }
        Ok(Arc::new(self.kind.output(source.is_nullable())))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "{} runs asynchronously",
            self.name()
        )))
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for ObjectFunction {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [arg] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes one argument",
                self.name()
            )));
        };
        let refs = references(arg.to_array(rows)?.as_ref())?;
        let result: ArrayRef = match self.kind {
            Kind::Ref => {
                let access = &self.access;
                let looked_up: Vec<Option<ObjectRef>> = futures::stream::iter(refs)
                    .map(|r| async move {
                        match r {
                            Some(r) => access.head(&r.uri).await.map(Some),
                            None => Ok(None),
                        }
                    })
                    .buffered(access.concurrency.max(1))
                    .try_collect()
                    .await?;
                object_ref_array(&looked_up)?
            }
            Kind::Bytes | Kind::Image | Kind::Audio => {
                let bytes = self.access.read_all(refs).await?;
                let slices = bytes.iter().map(|b| b.as_deref());
                match self.kind {
                    Kind::Image => sluice_types::media::image_array(slices)?,
                    Kind::Audio => sluice_types::media::audio_array(slices)?,
                    _ => Arc::new(slices.collect::<BinaryArray>()),
                }
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// The references an argument holds: `OBJECT_REF`s, or URIs as text.
fn references(array: &dyn Array) -> Result<Vec<Option<ObjectRef>>> {
    let uri = |u: Option<&str>| {
        u.map(|u| ObjectRef {
            uri: u.to_owned(),
            ..ObjectRef::default()
        })
    };
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(uri).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(uri).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(uri).collect(),
        DataType::Null => vec![None; array.len()],
        _ => (0..array.len())
            .map(|i| object_ref_at(array, i))
            .collect::<Result<_>>()?,
    })
}

/// The four functions over `access`.
pub fn all(access: &Arc<ObjectAccess>) -> Vec<ScalarUDF> {
    [Kind::Ref, Kind::Bytes, Kind::Image, Kind::Audio]
        .into_iter()
        .map(|kind| {
            let function = ObjectFunction {
                kind,
                access: Arc::clone(access),
                // Volatile: the objects may change between two calls.
                signature: Signature::any(1, Volatility::Volatile),
            };
            AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()
        })
        .collect()
}
