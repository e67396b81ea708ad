//! `TENSOR` values: element types, shapes, storage and the text form.
//!
//! A fixed-shape tensor (`TENSOR(FLOAT, [3,224,224])`) is Arrow's canonical
//! `arrow.fixed_shape_tensor`: a `FixedSizeList<elem>` of the shape's
//! product, row-major, the shape in the field metadata. A variable-shape
//! tensor (`TENSOR(FLOAT)`) is `Struct{data: List<elem>, shape: List<Int32>}`
//! named `sluice.tensor`: Arrow's canonical `arrow.variable_shape_tensor`
//! fixes the number of dimensions in its storage type, which would make
//! `image_decode` (rank 3) and `tensor_reshape` (any rank) return different
//! SQL types for one function; one type of any rank keeps them simple.
//!
//! The text form is nested arrays, as numpy's `tolist()` and JSON write
//! them: `[[1,2],[3,4]]`. Input accepts the same and checks that it is
//! rectangular and fits the element type.
//!
//! Folders by concept: element types ([`element`]), shapes ([`shape`]),
//! Arrow storage ([`storage`]), the text form ([`text`]), conversions
//! ([`convert`]) and the row builder ([`builder`]).

mod builder;
mod convert;
mod element;
mod shape;
mod storage;
mod text;

pub use builder::TensorBuilder;
pub use convert::{convert_to_tensor, elements_of};
pub use element::{MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK, TensorElement};
pub use shape::TensorShape;
pub use storage::{
    dims_at, element_array, fixed_metadata, fixed_storage, shape_of_metadata, tensor_array,
    tensor_at, variable_array, variable_parts, variable_storage,
};
pub use text::{Elements, TensorValue, check_fits, format_shape, format_tensor, parse_tensor};

#[cfg(test)]
mod tests;
