//! One error type for every handler, rendered as RFC 9457 `application/problem+json`.
//!
//! Rejections are 4xx naming what was wrong; conflicts are 409; failures of the log are 503; anything
//! unexpected is a 500 whose details are logged once and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rectify_domain::DomainError;
use rectify_eventlog::{AppendError, DiskRefusal, ReadError};
use serde::Serialize;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not take that method")]
    MethodNotAllowed,
    /// The body or a parameter is malformed (400) or well-formed but invalid (422); `field` names it.
    #[error("{detail}")]
    Invalid { status: StatusCode, field: Option<String>, detail: String },
    /// The aggregate changed since the version the client saw.
    #[error("{0}")]
    Conflict(String),
    /// The command does not fit the problem's current state.
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Unavailable(String),
    /// The disk is full or read-only: the command was not recorded.
    #[error("the service cannot write to its disk ({0}); the command was not recorded")]
    InsufficientStorage(String),
    #[error("{0}")]
    Timeout(String),
    /// Over the rate limit of the token (see `edge`).
    #[error("{0}")]
    TooManyRequests(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 naming `field`.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid { status: StatusCode::UNPROCESSABLE_ENTITY, field: Some(field.into()), detail: detail.into() }
    }

    /// A 400 about a malformed request.
    pub fn bad_request(field: Option<String>, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid { status: StatusCode::BAD_REQUEST, field, detail: detail.into() }
    }

    fn status_and_slug(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::Invalid { status, .. } if *status == StatusCode::BAD_REQUEST => {
                (*status, "malformed-request", "Malformed request")
            }
            ApiError::Invalid { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                (*status, "body-too-large", "Request body too large")
            }
            ApiError::Invalid { status, .. } if *status == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (*status, "unsupported-media-type", "Unsupported media type")
            }
            ApiError::Invalid { status, .. } => (*status, "invalid-field", "Invalid field"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "version-conflict", "Version conflict"),
            ApiError::InvalidState(_) => (StatusCode::CONFLICT, "invalid-state", "Not allowed in the current state"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", "Timed out"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient-storage", "Insufficient storage")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

/// The RFC 9457 body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, slug, title) = self.status_and_slug();
        let detail = match &self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "the service failed to handle this request; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let field = match &self {
            ApiError::Invalid { field, .. } => field.clone(),
            _ => None,
        };
        let body = Problem {
            kind: format!("urn:rectify:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail,
            field,
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        match e {
            DomainError::Forbidden(_) | DomainError::SeparationOfDuties(_) => ApiError::Forbidden(e.to_string()),
            DomainError::NotFound(_) => ApiError::NotFound(e.to_string()),
            DomainError::InvalidState { .. } => ApiError::InvalidState(e.to_string()),
            DomainError::Invalid { field, message } => ApiError::invalid(field, format!("`{field}` {message}")),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            ReadError::Disk { refusal, .. } => full_disk(refusal, &e),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<AppendError> for ApiError {
    fn from(e: AppendError) -> ApiError {
        match e {
            AppendError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            AppendError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            AppendError::Disk { refusal, .. } => full_disk(refusal, &e),
            AppendError::Failed(_) => ApiError::Internal(e.into()),
        }
    }
}

impl From<rectify_projector::StoreError> for ApiError {
    fn from(e: rectify_projector::StoreError) -> ApiError {
        match e.disk_refusal() {
            Some(refusal) => full_disk(refusal, &e),
            None => ApiError::Internal(e.into()),
        }
    }
}

/// The 507 of a disk that refuses writes, whether the log or the views found out, writing or reading (sled
/// answers every call with the error of its failed write until it is reopened). The client is told the kind
/// of refusal only; the paths and details go to the service's log.
fn full_disk(refusal: DiskRefusal, error: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(%error, "the disk is full or read-only");
    ApiError::InsufficientStorage(refusal.to_string())
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use rectify_eventlog::{AppendError, DiskRefusal, ReadError};

    #[test]
    fn a_full_disk_is_507_whether_writing_reading_the_log_or_reading_the_views() {
        let storage = |e: ApiError| matches!(e, ApiError::InsufficientStorage(ref r) if r == "no space left on device");
        let refusal = DiskRefusal::Full;
        assert!(storage(AppendError::Disk { refusal, reason: "sled write failed".into() }.into()));
        assert!(storage(ReadError::Disk { refusal, reason: "sled read failed".into() }.into()));
        assert!(storage(rectify_projector::StoreError::Io(std::io::Error::from_raw_os_error(28)).into()));
        let read_only = std::io::Error::from_raw_os_error(30);
        assert!(matches!(
            ApiError::from(rectify_projector::StoreError::Io(read_only)),
            ApiError::InsufficientStorage(ref r) if r == "read-only file system"
        ));
        assert!(matches!(ApiError::from(ReadError::Failed("sled: corrupted page".into())), ApiError::Internal(_)));
        assert!(matches!(ApiError::from(AppendError::Failed("no space left on device".into())), ApiError::Internal(_)));
    }
}
