//! The end-to-end tests: the real `rectify` binary, over HTTP, on each backend (a real nats-server where
//! NATS is involved). One test binary, as matklad's "Delete Cargo Integration Tests" advises.

mod api;
mod app;
mod audit;
mod bench;
mod cluster;
mod crash;
mod dashboard;
mod deploy;
mod faults;
mod jetstream;
mod lifecycle;
mod schema;
mod secrets;
mod views;
