//! Extractors whose rejections are problem+json naming the offending field: JSON bodies, query strings and
//! path parameters (axum's own answer with a plain-text 400).

use crate::error::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

/// Like `axum::Json`, but every failure says which field was wrong.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::Invalid {
                status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                field: None,
                detail: "the body must be application/json".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError::Invalid {
            status: e.status(),
            field: None,
            detail: e.body_text(),
        })?;
        // serde would also take a struct from a positional array (`["duplicate"]`); bodies are objects.
        let first = bytes.trim_ascii_start().first();
        if first.is_some_and(|b| *b != b'{') && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
            return Err(ApiError::Invalid {
                status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                field: None,
                detail: "the body must be a JSON object".into(),
            });
        }
        parse(&bytes).map(JsonBody)
    }
}

/// Deserializes `bytes`, naming the field at fault: syntax errors (and bytes after the value) are 400, wrong
/// or missing fields 422.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // serde reports a missing (or repeated) field at its parent; name the field itself.
        let missing = ["missing field `", "duplicate field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|m| m.split('`').next());
        let field = match (missing, path.as_str()) {
            (Some(m), "." | "") => m.to_owned(),
            (Some(m), p) => format!("{p}.{m}"),
            (None, p) => p.to_owned(),
        };
        let detail = message.split(" at line ").next().unwrap_or(&message).to_owned();
        // serde_json reports some type errors as syntax (`"sector": null` is "expected value"): only a body
        // that does not parse as JSON at all is malformed.
        let malformed =
            (inner.is_syntax() || inner.is_eof()) && serde_json::from_slice::<serde_json::Value>(bytes).is_err();
        if malformed {
            ApiError::bad_request(None, format!("the body is not valid JSON: {detail}"))
        } else if inner.is_syntax() && !field.is_empty() && field != "." {
            ApiError::invalid(field.clone(), format!("`{field}` has the wrong type ({detail})"))
        } else if field.is_empty() || field == "." {
            ApiError::Invalid { status: axum::http::StatusCode::UNPROCESSABLE_ENTITY, field: None, detail }
        } else {
            ApiError::invalid(field.clone(), format!("`{field}`: {detail}"))
        }
    })?;
    // One JSON value and nothing after it: `{...} trailing` is malformed, not a valid body.
    de.end().map_err(|e| {
        let message = e.to_string();
        let detail = message.split(" at line ").next().unwrap_or(&message).to_owned();
        ApiError::bad_request(None, format!("the body is not valid JSON: {detail}"))
    })?;
    Ok(value)
}

/// Like `axum::extract::Query`, but a bad parameter is a 422 naming it.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri).map(|Query(q)| Params(q)).map_err(|e| {
            // axum says "Failed to deserialize query string: <parameter>: <reason>".
            let text = e.body_text();
            let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
            match message.split_once(": ") {
                Some((field, reason))
                    if !field.is_empty() && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    ApiError::invalid(field, format!("`{field}`: {reason}"))
                }
                _ => ApiError::Invalid {
                    status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    field: None,
                    detail: message.to_owned(),
                },
            }
        })
    }
}

/// The one path parameter of a route; one that does not decode (`%FF`) names nothing there is: 404.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(PathParam(p)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::NotFound(e.body_text())),
            Err(e) => Err(ApiError::Internal(anyhow::anyhow!("{}", e.body_text()))),
        }
    }
}
