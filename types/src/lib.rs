//! Sluice's logical types: the multimodal SQL types (EMBEDDING/VECTOR(n),
//! TENSOR, IMAGE, AUDIO, OBJECT_REF) as Arrow types plus field extension
//! metadata, their SQL type planning, casts and wire encodings.
//!
//! This is the lowest crate: it depends on Arrow and DataFusion only, and
//! every other Sluice crate may use its vocabulary. The multimodal types
//! themselves land with the multimodal-types work; today the crate holds the
//! names shared by the crates above it.

/// The Arrow field-metadata key that names an extension type; Sluice marks
/// its logical types with it so they survive Parquet, projections and UDFs.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
