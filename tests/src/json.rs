//! Addressing the parts of a JSON value, for the tests that mutate request bodies and stored commits.

use serde_json::Value;

/// Every path (object keys, array indexes) of a JSON value, the empty path (the value itself) first.
pub fn paths(value: &Value) -> Vec<Vec<String>> {
    fn walk(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        let children: Vec<(String, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            Value::Array(items) => items.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            prefix.push(key);
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// The part of `value` at `path` (one of [`paths`]).
pub fn at_path<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(value, |v, key| match v {
        Value::Object(map) => map.get_mut(key).expect("a path of this value"),
        Value::Array(items) => &mut items[key.parse::<usize>().expect("an index")],
        _ => unreachable!("paths only go through objects and arrays"),
    })
}
