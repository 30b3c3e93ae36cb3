//! In-process tests of the whole router (`tower::ServiceExt::oneshot`): each test starts a service on a
//! temp dir with the embedded log, makes tokens on the same dir and sends requests without a socket.

#[path = "router/support.rs"]
mod support;

#[path = "router/input.rs"]
mod input;

#[path = "router/matrix.rs"]
mod matrix;

#[path = "router/headers.rs"]
mod headers;

#[path = "router/auth.rs"]
mod auth;

#[path = "router/ledger.rs"]
mod ledger;

#[path = "router/edge.rs"]
mod edge;
