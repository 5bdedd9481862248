//! Stream records as Lambda's DynamoDB event shows them: attribute values in DynamoDB JSON.

use super::*;

pub(super) fn b64(b: &aws_sdk_dynamodbstreams::primitives::Blob) -> J {
    J::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
}

/// An attribute value in DynamoDB's JSON (`{"S": "x"}`, `{"N": "1"}`, `{"B": "<base64>"}`, ...).
pub fn attribute_json(v: &AttributeValue) -> J {
    match v {
        AttributeValue::S(s) => json!({"S": s}),
        AttributeValue::N(n) => json!({"N": n}),
        AttributeValue::B(b) => json!({"B": b64(b)}),
        AttributeValue::Ss(v) => json!({"SS": v}),
        AttributeValue::Ns(v) => json!({"NS": v}),
        AttributeValue::Bs(v) => json!({"BS": v.iter().map(b64).collect::<Vec<_>>()}),
        AttributeValue::M(m) => json!({"M": item_json(m)}),
        AttributeValue::L(l) => json!({"L": l.iter().map(attribute_json).collect::<Vec<_>>()}),
        AttributeValue::Null(b) => json!({"NULL": b}),
        AttributeValue::Bool(b) => json!({"BOOL": b}),
        _ => J::Null,
    }
}

/// An item (attribute name to value) in DynamoDB's JSON.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> J {
    J::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect(),
    )
}
