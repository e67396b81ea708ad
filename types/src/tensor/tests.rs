use super::*;

#[test]
fn text_round_trips_for_fixed_and_variable_shapes() {
    for shape in [Some(TensorShape::try_new(&[2, 3]).unwrap()), None] {
        let value = parse_tensor("[[1,2,3],[4,5.5,6]]", TensorElement::Float32).unwrap();
        assert_eq!(value.shape, vec![2, 3]);
        let array = tensor_array(TensorElement::Float32, shape, &[Some(value), None]).unwrap();
        assert!(array.is_null(1));
        let (dims, elements) = tensor_at(array.as_ref(), shape, 0).unwrap();
        let mut text = String::new();
        format_tensor(&dims, elements.as_ref(), &mut text).unwrap();
        assert_eq!(text, "[[1,2,3],[4,5.5,6]]");
    }
}

#[test]
fn input_errors_are_clear() {
    for (text, elem, message) in [
        ("[[1,2],[3]]", TensorElement::Float32, "not rectangular"),
        ("[1,\"a\"]", TensorElement::Float32, "not rectangular"),
        ("[]", TensorElement::Float32, "dimension is empty"),
        ("3", TensorElement::Float32, "expected an array"),
        ("[300]", TensorElement::UInt8, "out of range for uint8"),
        ("[1.5]", TensorElement::Int32, "not an integer"),
        ("[1e40]", TensorElement::Float32, "out of range for float32"),
        ("[[1,2]", TensorElement::Float32, "expected nested arrays"),
    ] {
        let err = parse_tensor(text, elem).unwrap_err().to_string();
        assert!(err.contains(message), "{text}: {err}");
    }
    let value = parse_tensor("[1,2]", TensorElement::Float32).unwrap();
    let fixed = TensorShape::try_new(&[3]).unwrap();
    let err = tensor_array(TensorElement::Float32, Some(fixed), &[Some(value)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected a tensor of shape [3], not [2]"),
        "{err}"
    );
}

#[test]
fn int64_elements_are_exact() {
    let value = parse_tensor("[9007199254740993]", TensorElement::Int64).unwrap();
    let array = tensor_array(TensorElement::Int64, None, &[Some(value)]).unwrap();
    let (dims, elements) = tensor_at(array.as_ref(), None, 0).unwrap();
    let mut text = String::new();
    format_tensor(&dims, elements.as_ref(), &mut text).unwrap();
    assert_eq!(text, "[9007199254740993]");
}

#[test]
fn shapes_are_checked_and_carried_in_canonical_metadata() {
    assert!(TensorShape::try_new(&[]).is_err());
    assert!(TensorShape::try_new(&[0, 3]).is_err());
    assert!(TensorShape::try_new(&[1; 9]).is_err());
    assert!(TensorShape::try_new(&[1 << 20, 1 << 20]).is_err());
    let shape = TensorShape::try_new(&[3, 224, 224]).unwrap();
    let metadata = fixed_metadata(TensorElement::Float32, shape).unwrap();
    assert_eq!(metadata, r#"{"shape":[3,224,224]}"#);
    assert_eq!(shape_of_metadata(&metadata), Some(shape));
}
