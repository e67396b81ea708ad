//! Tensor element types and the bounds on a tensor's size.

use datafusion::arrow::datatypes::DataType;

/// The most dimensions a tensor may have. A bound keeps [`TensorShape`]
/// `Copy` (so [`crate::SluiceType`] stays a plain value); ONNX models and
/// image/audio tensors use at most 5.
pub const MAX_TENSOR_RANK: usize = 8;

/// The largest number of elements one tensor value may hold: 2^27, so a
/// value stays within 1 GiB even as float64 (Postgres bounds one value to
/// 1 GB). Arrow would allow `i32::MAX`, but a single NULL of a fixed shape
/// that large allocates 16 GiB, which aborted the server.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 27;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorElement {
    /// `FLOAT` / `FLOAT32` / `REAL`.
    Float32,
    /// `FLOAT16` / `HALF`.
    Float16,
    /// `DOUBLE` / `FLOAT64`.
    Float64,
    /// `INT8` / `TINYINT`.
    Int8,
    /// `UINT8` (image pixels).
    UInt8,
    /// `INT16` / `SMALLINT`.
    Int16,
    /// `INT32` / `INT` / `INTEGER`.
    Int32,
    /// `INT64` / `BIGINT`.
    Int64,
}

impl TensorElement {
    /// Every element type, for name lookups and tests.
    pub const ALL: [TensorElement; 8] = [
        TensorElement::Float32,
        TensorElement::Float16,
        TensorElement::Float64,
        TensorElement::Int8,
        TensorElement::UInt8,
        TensorElement::Int16,
        TensorElement::Int32,
        TensorElement::Int64,
    ];

    /// The element type a SQL name denotes (case-insensitive).
    pub fn from_sql_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "float" | "float32" | "float4" | "real" => TensorElement::Float32,
            "float16" | "half" => TensorElement::Float16,
            "double" | "float64" | "float8" => TensorElement::Float64,
            "int8" | "tinyint" => TensorElement::Int8,
            "uint8" => TensorElement::UInt8,
            "int16" | "smallint" => TensorElement::Int16,
            "int32" | "int" | "integer" => TensorElement::Int32,
            "int64" | "bigint" => TensorElement::Int64,
            _ => return None,
        })
    }

    /// The name shown in type names (`tensor(float32,[2,2])`).
    pub fn sql_name(self) -> &'static str {
        match self {
            TensorElement::Float32 => "float32",
            TensorElement::Float16 => "float16",
            TensorElement::Float64 => "float64",
            TensorElement::Int8 => "int8",
            TensorElement::UInt8 => "uint8",
            TensorElement::Int16 => "int16",
            TensorElement::Int32 => "int32",
            TensorElement::Int64 => "int64",
        }
    }

    /// The Arrow type of the elements.
    pub fn data_type(self) -> DataType {
        match self {
            TensorElement::Float32 => DataType::Float32,
            TensorElement::Float16 => DataType::Float16,
            TensorElement::Float64 => DataType::Float64,
            TensorElement::Int8 => DataType::Int8,
            TensorElement::UInt8 => DataType::UInt8,
            TensorElement::Int16 => DataType::Int16,
            TensorElement::Int32 => DataType::Int32,
            TensorElement::Int64 => DataType::Int64,
        }
    }

    /// The element type stored as `data_type`.
    pub fn of_data_type(data_type: &DataType) -> Option<Self> {
        Self::ALL.into_iter().find(|e| &e.data_type() == data_type)
    }

    pub(super) fn is_float(self) -> bool {
        matches!(
            self,
            TensorElement::Float32 | TensorElement::Float16 | TensorElement::Float64
        )
    }
}
