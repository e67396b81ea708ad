//! State batches as bytes: the Arrow IPC file format, so a checkpoint's
//! state is columnar, typed (Sluice's extension metadata included) and
//! readable by any Arrow tool.

use std::io::Cursor;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::error::{DataFusionError, Result};

/// `batches` (one schema, at least one batch) as an Arrow IPC file.
pub fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = batches.first() else {
        return Err(DataFusionError::Internal(
            "no batches to encode in a checkpoint".into(),
        ));
    };
    let mut writer = FileWriter::try_new(Vec::new(), &first.schema())?;
    for batch in batches {
        writer.write(batch)?;
    }
    Ok(writer.into_inner()?)
}

/// The batches of an Arrow IPC file written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let reader = FileReader::try_new(Cursor::new(bytes), None)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn batches_come_back_as_written() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Int64Array::from(vec![1, 2])),
            ],
        )
        .unwrap();
        let bytes = encode(&[batch.clone(), batch.slice(1, 1)]).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded, vec![batch.clone(), batch.slice(1, 1)]);
    }

    #[test]
    fn nothing_to_encode_is_an_error_not_an_empty_file() {
        assert!(encode(&[]).is_err());
    }
}
