//! Reading stored JSON (commits, audit records, view rows).

use serde::de::DeserializeOwned;

/// Deserializes stored JSON bytes. Their UTF-8 is checked in one vectorized pass and the text read as a
/// `&str`: serde_json reading bytes checks each string on its own, which was 7 % of a rebuild's
/// instructions (a commit holds ~50 short strings, keys included).
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let text = simdutf8::compat::from_utf8(bytes).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_json_and_refuses_bytes_that_are_not_utf8() {
        assert_eq!(from_bytes::<Vec<String>>("[\"黔\",\"a\\\"b\"]".as_bytes()).unwrap(), ["黔", "a\"b"]);
        let error = from_bytes::<Vec<String>>(b"[\"\xff\"]").unwrap_err();
        assert!(error.contains("invalid utf-8"), "{error}");
        assert!(from_bytes::<Vec<String>>(b"[\"a\"").is_err());
    }
}
