//! The HTTP API and the processes of the `rectify` binary: `run` serves the API with its projector and
//! deadline watcher; the rest are the building blocks the subcommands share.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod demo;
pub mod edge;
pub mod error;
pub mod json;
pub mod pipeline;
pub mod rebuild;
pub mod regions;
pub mod routes;
pub mod server;
pub mod state;
pub mod tokens;
pub mod watcher;

pub use routes::router;
pub use server::{Backend, Service, Settings, run};
