//! Postgres' text form of an array (`array_out`): `{1,2,NULL}`, nested
//! arrays as `{{1,2},{3,4}}`, an element quoted when Postgres would read
//! it otherwise (empty, `NULL`, or holding a brace, comma, quote,
//! backslash or whitespace: `{"a b","say \"hi\""}`), each element written
//! as its own type's text (`t`/`f`, `1.5`, `2024-01-02 03:04:05`).
//!
//! Arrow's cast writes `[b, a]`, which no Postgres client parses as an
//! array; `ARRAY['b','a']::text` must be `{b,a}`.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::float_text;
use crate::interval_text::IntervalText;
use crate::timestamp_text::TimestampText;

/// How the elements of one array type are written.
#[derive(Debug, Clone)]
pub struct ArrayText {
    element: Element,
}

/// How one element is written.
#[derive(Debug, Clone)]
enum Element {
    /// An inner array, written unquoted.
    Nested(Box<ArrayText>),
    Text,
    Boolean,
    Float32,
    Float64,
    Timestamp(TimestampText),
    Interval(IntervalText),
    /// Integers, decimals and dates, as arrow displays them (which is
    /// Postgres' form for these).
    Displayed,
}

impl ArrayText {
    /// The writer for a column of `data_type`; `None` if it is no list
    /// (a fixed-size list is a vector or tensor, whose text is its own) or
    /// a list of elements this module does not write.
    pub fn of(data_type: &DataType) -> Option<Self> {
        let item = match data_type {
            DataType::List(item) | DataType::LargeList(item) => item,
            _ => return None,
        };
        let element = match item.data_type() {
            DataType::List(_) | DataType::LargeList(_) => {
                Element::Nested(Box::new(Self::of(item.data_type())?))
            }
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Element::Text,
            DataType::Boolean => Element::Boolean,
            DataType::Float32 => Element::Float32,
            DataType::Float64 => Element::Float64,
            other if other.is_integer() || other.is_decimal() => Element::Displayed,
            DataType::Date32 | DataType::Date64 => Element::Displayed,
            other => match (TimestampText::of(other), IntervalText::of(other)) {
                (Some(text), _) => Element::Timestamp(text),
                (None, Some(text)) => Element::Interval(text),
                // Bytes, structs, Sluice's types: not written here.
                (None, None) => return None,
            },
        };
        Some(Self { element })
    }

    /// Row `row` of `array` (a column of this writer's type) as Postgres
    /// writes it; `None` when it is NULL.
    pub fn format(&self, array: &dyn Array, row: usize) -> Option<String> {
        if array.is_null(row) {
            return None;
        }
        let values: ArrayRef = match array.data_type() {
            DataType::List(_) => array.as_list_opt::<i32>()?.value(row),
            DataType::LargeList(_) => array.as_list_opt::<i64>()?.value(row),
            _ => return None,
        };
        let mut text = String::with_capacity(2 + values.len() * 4);
        text.push('{');
        let displayed = match self.element {
            Element::Displayed => {
                ArrayFormatter::try_new(values.as_ref(), &FormatOptions::default()).ok()
            }
            _ => None,
        };
        for at in 0..values.len() {
            if at > 0 {
                text.push(',');
            }
            if values.is_null(at) {
                text.push_str("NULL");
                continue;
            }
            let element = match &self.element {
                Element::Nested(inner) => {
                    // An inner array is never quoted; a NULL one was
                    // written above.
                    text.push_str(&inner.format(values.as_ref(), at).unwrap_or_default());
                    continue;
                }
                Element::Text => string_at(values.as_ref(), at),
                Element::Boolean => values
                    .as_boolean_opt()
                    .map(|b| if b.value(at) { "t" } else { "f" }.to_owned()),
                Element::Float32 => values
                    .as_primitive_opt::<Float32Type>()
                    .map(|f| float_text::format_f32(f.value(at))),
                Element::Float64 => values
                    .as_primitive_opt::<Float64Type>()
                    .map(|f| float_text::format_f64(f.value(at))),
                Element::Timestamp(writer) => writer.format(values.as_ref(), at),
                Element::Interval(writer) => writer.format(values.as_ref(), at),
                Element::Displayed => displayed.as_ref().map(|f| f.value(at).to_string()),
            };
            push_element(&mut text, &element.unwrap_or_default());
        }
        text.push('}');
        Some(text)
    }
}

/// Row `at` of a text column of any of arrow's three layouts.
fn string_at(values: &dyn Array, at: usize) -> Option<String> {
    match values.data_type() {
        DataType::Utf8 => Some(values.as_string_opt::<i32>()?.value(at).to_owned()),
        DataType::LargeUtf8 => Some(values.as_string_opt::<i64>()?.value(at).to_owned()),
        DataType::Utf8View => Some(values.as_string_view_opt()?.value(at).to_owned()),
        _ => None,
    }
}

/// Appends `element`, quoted and escaped where Postgres' array input
/// would otherwise read it differently.
fn push_element(text: &mut String, element: &str) {
    let quote = element.is_empty()
        || element.eq_ignore_ascii_case("NULL")
        || element
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        text.push_str(element);
        return;
    }
    text.push('"');
    for c in element.chars() {
        if matches!(c, '"' | '\\') {
            text.push('\\');
        }
        text.push(c);
    }
    text.push('"');
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        BooleanArray, Float64Array, Int32Array, ListArray, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Field;

    use super::*;

    fn list(values: ArrayRef, offsets: &[i32]) -> ListArray {
        let item = Arc::new(Field::new_list_field(values.data_type().clone(), true));
        ListArray::new(
            item,
            OffsetBuffer::new(offsets.to_vec().into()),
            values,
            None,
        )
    }

    fn written(array: &dyn Array) -> Vec<Option<String>> {
        let writer = ArrayText::of(array.data_type());
        (0..array.len())
            .map(|row| writer.as_ref().and_then(|w| w.format(array, row)))
            .collect()
    }

    #[test]
    fn text_elements_are_quoted_where_postgres_needs_it() {
        let values = StringArray::from(vec![
            Some("b"),
            Some("a"),
            Some(""),
            None,
            Some("null"),
            Some("a b"),
            Some("say \"hi\""),
            Some("x,y"),
            Some("back\\slash"),
        ]);
        let array = list(Arc::new(values), &[0, 2, 9, 9]);
        assert_eq!(
            written(&array),
            vec![
                Some("{b,a}".to_owned()),
                Some(r#"{"",NULL,"null","a b","say \"hi\"","x,y","back\\slash"}"#.to_owned()),
                Some("{}".to_owned()),
            ]
        );
    }

    #[test]
    fn elements_are_written_as_their_types_text() {
        let floats = list(
            Arc::new(Float64Array::from(vec![1.5, 120.0, 1e20])),
            &[0, 3],
        );
        assert_eq!(written(&floats), vec![Some("{1.5,120,1e+20}".to_owned())]);
        let booleans = list(Arc::new(BooleanArray::from(vec![true, false])), &[0, 2]);
        assert_eq!(written(&booleans), vec![Some("{t,f}".to_owned())]);
        let timestamps = list(
            Arc::new(TimestampMicrosecondArray::from(vec![1_704_164_645_500_000])),
            &[0, 1],
        );
        assert_eq!(
            written(&timestamps),
            vec![Some(r#"{"2024-01-02 03:04:05.5"}"#.to_owned())]
        );
    }

    #[test]
    fn nested_arrays_are_braced_unquoted() {
        let inner = list(Arc::new(Int32Array::from(vec![1, 2, 3, 4])), &[0, 2, 4]);
        let outer = list(Arc::new(inner), &[0, 2]);
        assert_eq!(written(&outer), vec![Some("{{1,2},{3,4}}".to_owned())]);
    }

    #[test]
    fn vectors_and_lists_of_bytes_are_not_written_here() {
        let bytes = DataType::List(Arc::new(Field::new_list_field(DataType::Binary, true)));
        assert!(ArrayText::of(&bytes).is_none());
        let vector =
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), 3);
        assert!(ArrayText::of(&vector).is_none());
    }
}
