//! The dashboard at `/`: one self-contained page (HTML, CSS, JavaScript, SVG charts; nothing fetched from
//! elsewhere) built into the binary. Loading it needs no token; the page asks for one (or reads it from
//! `#token=…`, as `rectify demo` prints it) and calls the API with it.

use axum::http::{HeaderName, header};
use axum::response::IntoResponse;

/// The page, from `crates/api/assets/dashboard.html`.
pub const PAGE: &str = include_str!("../../assets/dashboard.html");

/// Everything the page needs is inline or on this origin; nothing else may load.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /`: the dashboard.
pub async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        // No CDN, no web font, no remote image: everything the page shows is in it or comes from the API.
        for needle in ["http://", "https://", "//cdn", "<link", "<script src", "@import", "url("] {
            assert!(!PAGE.contains(needle), "the dashboard must not reference `{needle}`");
        }
        assert!(PAGE.contains("/api/v1/stream"), "it follows the live feed");
        for key in ["zh:", "en:"] {
            assert!(PAGE.contains(key), "labels in both languages");
        }
    }
}
