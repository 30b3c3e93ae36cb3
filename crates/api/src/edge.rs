//! What happens at the edge, before any handler: a rate limit per token and CORS.
//!
//! - **Rate limit** (off unless configured, `rectify serve --rate-limit N [--rate-burst B]`): a token
//!   bucket per actor (the token's id, never the token), refilled at `N` requests per second up to `B`. A
//!   request over it is answered 429 problem+json with `Retry-After` and never reaches a handler. Requests
//!   without a valid token are not counted: they are refused with 401 anyway, and counting them per token
//!   would let anyone fill the table with made-up tokens.
//! - **CORS** is closed by default: no `Access-Control-Allow-*` header is ever sent, so browsers refuse
//!   cross-origin calls. `--cors-origin https://dashboard.example` (repeatable) allows exactly those origins
//!   (answering their preflight `OPTIONS` requests); `*` is not accepted, since every call carries a token.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A rate limit: `per_second` requests on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// The edge's settings.
#[derive(Debug, Clone, Default)]
pub struct EdgeSettings {
    /// Per-token rate limit; `None` for none.
    pub rate_limit: Option<RateLimit>,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`); empty for none.
    pub cors_origins: Vec<String>,
}

/// The edge's state: settings and one bucket per actor.
pub struct Edge {
    settings: EdgeSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Headers a cross-origin caller may send.
const ALLOWED_HEADERS: &str = "authorization, content-type, idempotency-key, if-match, x-correlation-id";

impl Edge {
    pub fn new(settings: EdgeSettings) -> Arc<Edge> {
        Arc::new(Edge { settings, buckets: Mutex::new(HashMap::new()) })
    }

    /// Takes one request from `actor`'s bucket; `Err(wait)` when it is empty.
    fn take(&self, actor: &str, limit: RateLimit) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(limit.burst.max(1));
        // The guard is never held across an await: this function is synchronous.
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        let bucket = buckets.entry(actor.to_owned()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / limit.per_second.max(1e-9)))
        }
    }

    /// The request's origin if it is an allowed one.
    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.settings.cors_origins.iter().any(|o| o == text).then(|| origin.clone())
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("Bearer").then(|| token.trim())
}

/// The middleware: CORS preflight and headers, then the rate limit, then the handler.
pub async fn edge(State((state, edge)): State<(AppState, Arc<Edge>)>, request: Request, next: Next) -> Response {
    let origin = edge.allowed_origin(request.headers());
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight && let Some(origin) = origin {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    if let Some(limit) = edge.settings.rate_limit {
        let actor = bearer(request.headers()).and_then(|t| state.tokens.authenticate(t)).map(|a| a.id);
        if let Some(actor) = actor
            && let Err(wait) = edge.take(&actor, limit)
        {
            let seconds = (wait.as_secs_f64().ceil() as u64).max(1);
            let mut response = ApiError::TooManyRequests(format!(
                "more than {} requests per second with this token; retry in {seconds} s",
                limit.per_second
            ))
            .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("etag, retry-after"));
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_burst_then_refills_at_the_rate() {
        let edge = Edge::new(EdgeSettings::default());
        let limit = RateLimit { per_second: 1000.0, burst: 5 };
        for _ in 0..5 {
            assert!(edge.take("a", limit).is_ok());
        }
        assert!(edge.take("a", limit).is_err());
        // Another actor has a bucket of its own.
        assert!(edge.take("b", limit).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(edge.take("a", limit).is_ok(), "refilled at 1000/s after 5 ms");
    }
}
