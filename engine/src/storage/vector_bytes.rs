//! How `VECTOR(n)` columns (and float32 `TENSOR`s of a fixed shape, the
//! same storage) are laid out in data files: as `FixedSizeBinary(4n)`
//! holding the floats' bytes, not as Parquet lists.
//!
//! Parquet stores a fixed-size list with a repetition and a definition
//! level per element, and arrow-rs decodes a `FixedSizeList<f32, 1536>`
//! column at about 80k rows/s (~500 MB/s) on two cores: an exact vector
//! scan spent nearly all its time there, not in the distance kernel. The
//! same bytes as a fixed-size binary column are one value per row, and
//! become the vector again without copying (the buffer is reinterpreted).
//! Nothing outside the data files changes: the table's schema (in the
//! manifest) keeps the vector type, and files written before (as lists)
//! are read as they are.
//!
//! Written here because no crate or DataFusion option chooses a Parquet
//! physical layout per Arrow type; the read side plugs into DataFusion's
//! [`PhysicalExprAdapterFactory`] extension point.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, RecordBatch,
};
use datafusion::arrow::buffer::{Buffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterPropertiesBuilder};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapterFactory, PhysicalExprAdapter, PhysicalExprAdapterFactory,
};
use datafusion::physical_plan::PhysicalExpr;

/// Marks a data-file field holding a vector's bytes (for people reading
/// the files with other tools).
const STORED_AS: &str = "sluice.stored_as";

/// The dimension of a `VECTOR(n)` field: a fixed-size list of float32.
fn vector_dim(field: &Field) -> Option<i32> {
    match field.data_type() {
        DataType::FixedSizeList(item, n) if item.data_type() == &DataType::Float32 => Some(*n),
        _ => None,
    }
}

/// The schema rows of `table` are written under: vector columns as
/// fixed-size binary.
pub fn file_schema(table: &SchemaRef) -> SchemaRef {
    if !table.fields().iter().any(|f| vector_dim(f).is_some()) {
        return Arc::clone(table);
    }
    let fields: Vec<FieldRef> = table
        .fields()
        .iter()
        .map(|f| match vector_dim(f) {
            Some(n) => Arc::new(
                Field::new(f.name(), DataType::FixedSizeBinary(4 * n), f.is_nullable())
                    .with_metadata([(STORED_AS.to_string(), "vector".to_string())].into()),
            ),
            None => Arc::clone(f),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
}

/// Vector columns are neither compressed (floats do not compress) nor given
/// statistics (min/max of 6 KiB values help no query) nor dictionaries,
/// and are cut into small pages: an index search reads a handful of rows,
/// and a row selection decodes whole pages (a 1 MiB page per hit was most
/// of a search's time). Pages close at write-batch boundaries, hence the
/// smaller batches for tables with vectors.
pub fn tune_writer(
    table: &SchemaRef,
    mut builder: WriterPropertiesBuilder,
) -> WriterPropertiesBuilder {
    let mut has_vectors = false;
    for field in table.fields().iter().filter(|f| vector_dim(f).is_some()) {
        let path = ColumnPath::from(field.name().as_str());
        builder = builder
            .set_column_compression(path.clone(), Compression::UNCOMPRESSED)
            .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_data_page_size_limit(path, VECTOR_PAGE_BYTES);
        has_vectors = true;
    }
    if has_vectors {
        builder = builder.set_write_batch_size(VECTOR_WRITE_BATCH_ROWS);
    }
    builder
}

/// Page size of vector columns.
const VECTOR_PAGE_BYTES: usize = 64 * 1024;
/// Rows per write batch in tables with vector columns (pages are closed
/// between batches only).
const VECTOR_WRITE_BATCH_ROWS: usize = 64;

/// `batch` (of the table's schema) as rows of `file_schema`.
pub fn to_file_batch(batch: &RecordBatch, file_schema: &SchemaRef) -> Result<RecordBatch> {
    if Arc::ptr_eq(batch.schema_ref(), file_schema) || batch.schema_ref() == file_schema {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(file_schema.fields())
        .map(|(column, field)| match field.data_type() {
            DataType::FixedSizeBinary(width) if column.data_type() != field.data_type() => {
                vector_bytes(column, *width)
            }
            _ => Ok(Arc::clone(column)),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(file_schema), columns)?)
}

/// A vector column's floats as one fixed-size binary value per row (the
/// same bytes: no copy).
fn vector_bytes(column: &ArrayRef, width: i32) -> Result<ArrayRef> {
    let list = column.as_fixed_size_list_opt().ok_or_else(|| {
        DataFusionError::Internal(format!("vector stored as {}", column.data_type()))
    })?;
    // Elements are never NULL in a vector or tensor value; a NULL row's
    // slots (NULL elements in arrays DataFusion makes for NULL rows) keep
    // whatever bytes they hold, under the row's NULL.
    let Some(floats) = list
        .values()
        .as_primitive_opt::<datafusion::arrow::datatypes::Float32Type>()
    else {
        return Err(DataFusionError::Internal(format!(
            "vector elements stored as {}",
            list.value_type()
        )));
    };
    let bytes: Buffer = floats.values().inner().clone();
    Ok(Arc::new(FixedSizeBinaryArray::try_new(
        width,
        bytes,
        list.nulls().cloned(),
    )?))
}

/// A fixed-size binary column of vector bytes as the `VECTOR(n)` column of
/// `field`: the buffer is reinterpreted when aligned, copied otherwise.
fn bytes_to_vector(column: &ArrayRef, field: &Field) -> Result<ArrayRef> {
    let (Some(binary), DataType::FixedSizeList(item, n)) =
        (column.as_fixed_size_binary_opt(), field.data_type())
    else {
        return Ok(Arc::clone(column));
    };
    let len = binary.len() * *n as usize;
    let bytes = binary.values().clone();
    if bytes.len() < len * 4 {
        return Err(DataFusionError::Internal(format!(
            "vector bytes hold {} bytes for {len} floats",
            bytes.len()
        )));
    }
    let floats: ScalarBuffer<f32> = if bytes.as_ptr().align_offset(4) == 0 {
        ScalarBuffer::new(bytes, 0, len)
    } else {
        // Values are in the machine's byte order: written by this machine
        // kind (Parquet keeps fixed-size binary bytes as they are).
        bytes[..len * 4]
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    Ok(Arc::new(FixedSizeListArray::try_new(
        Arc::clone(item),
        *n,
        Arc::new(Float32Array::new(floats, None)),
        binary.nulls().cloned(),
    )?))
}

/// `batch` read from a data file (vector columns as bytes, or as lists in
/// files written before) as rows of the table's `schema`.
pub fn from_file_batch(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| bytes_to_vector(column, field))
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Reads vector columns stored as bytes back as vectors in table scans;
/// everything else is DataFusion's default adaptation.
#[derive(Debug)]
pub struct VectorBytesAdapterFactory;

impl PhysicalExprAdapterFactory for VectorBytesAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> Result<Arc<dyn PhysicalExprAdapter>> {
        // Vector columns this file holds as bytes: the default adapter is
        // shown them with the table's type (so it adds no cast) and their
        // references are converted afterwards.
        let mut stored: Vec<(String, FieldRef)> = Vec::new();
        let fields: Vec<FieldRef> = physical_file_schema
            .fields()
            .iter()
            .map(|physical| {
                let logical = logical_file_schema.field_with_name(physical.name()).ok();
                match (physical.data_type(), logical) {
                    (DataType::FixedSizeBinary(width), Some(logical))
                        if vector_dim(logical).is_some_and(|n| 4 * n == *width) =>
                    {
                        let logical = Arc::new(logical.clone());
                        stored.push((physical.name().clone(), Arc::clone(&logical)));
                        logical
                    }
                    _ => Arc::clone(physical),
                }
            })
            .collect();
        let default = DefaultPhysicalExprAdapterFactory;
        if stored.is_empty() {
            return default.create(logical_file_schema, physical_file_schema);
        }
        let shown = Arc::new(Schema::new_with_metadata(
            fields,
            physical_file_schema.metadata().clone(),
        ));
        Ok(Arc::new(VectorBytesAdapter {
            inner: default.create(logical_file_schema, shown)?,
            stored,
        }))
    }
}

#[derive(Debug)]
struct VectorBytesAdapter {
    inner: Arc<dyn PhysicalExprAdapter>,
    /// Columns held as bytes, with their table field.
    stored: Vec<(String, FieldRef)>,
}

impl PhysicalExprAdapter for VectorBytesAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> Result<Arc<dyn PhysicalExpr>> {
        let adapted = self.inner.rewrite(expr)?;
        adapted
            .transform_up(|e| {
                let Some(column) = e.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                let Some((_, field)) = self.stored.iter().find(|(n, _)| n == column.name()) else {
                    return Ok(Transformed::no(e));
                };
                let udf = Arc::new(ScalarUDF::new_from_impl(VectorFromBytes::new(Arc::clone(
                    field,
                ))));
                let converted: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::new(
                    "vector_from_bytes",
                    udf,
                    vec![e],
                    Arc::clone(field),
                    Arc::new(ConfigOptions::default()),
                ));
                Ok(Transformed::new(
                    converted,
                    true,
                    datafusion::common::tree_node::TreeNodeRecursion::Jump,
                ))
            })
            .data()
    }
}

/// Vector bytes → the vector column of `field` (see [`bytes_to_vector`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFromBytes {
    field: FieldRef,
    signature: Signature,
}

impl VectorFromBytes {
    fn new(field: FieldRef) -> Self {
        Self {
            field,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for VectorFromBytes {
    fn name(&self) -> &str {
        "vector_from_bytes"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.field.data_type().clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::clone(&self.field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let column = args
            .args
            .into_iter()
            .next()
            .ok_or_else(|| {
                DataFusionError::Internal("vector_from_bytes takes one argument".into())
            })?
            .into_array(rows)?;
        Ok(ColumnarValue::Array(bytes_to_vector(&column, &self.field)?))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn vectors(rows: &[Option<[f32; 3]>]) -> ArrayRef {
        let values: Vec<f32> = rows.iter().flat_map(|r| r.unwrap_or([0.0; 3])).collect();
        let nulls: Vec<bool> = rows.iter().map(Option::is_some).collect();
        Arc::new(
            FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                3,
                Arc::new(Float32Array::from(values)),
                Some(nulls.into()),
            )
            .unwrap(),
        )
    }

    #[test]
    fn vectors_round_trip_through_their_bytes() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "v",
                DataType::FixedSizeList(
                    Arc::new(Field::new_list_field(DataType::Float32, true)),
                    3,
                ),
                true,
            ),
        ]));
        let file = file_schema(&schema);
        assert_eq!(file.field(1).data_type(), &DataType::FixedSizeBinary(12));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
                vectors(&[
                    Some([1.0, 2.0, 3.0]),
                    None,
                    Some([-0.5, 0.0, 7.25]),
                    Some([9.0; 3]),
                ]),
            ],
        )
        .unwrap();
        // A slice, as a scan or a filter may hand over.
        let sliced = batch.slice(1, 3);
        let stored = to_file_batch(&sliced, &file).unwrap();
        assert_eq!(stored.column(1).data_type(), &DataType::FixedSizeBinary(12));
        let back = from_file_batch(&stored, &schema).unwrap();
        assert_eq!(back, sliced);

        // Bytes that are not 4-byte aligned are copied, not reinterpreted.
        let binary = stored.column(1).as_fixed_size_binary();
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(binary.values().as_slice());
        let unaligned = Buffer::from_vec(shifted).slice(1);
        let unaligned: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_new(12, unaligned, binary.nulls().cloned()).unwrap(),
        );
        let copied = bytes_to_vector(&unaligned, schema.field(1)).unwrap();
        assert_eq!(&copied, sliced.column(1));
    }
}
