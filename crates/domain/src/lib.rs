//! The pure domain of Rectify: problems and inspections, the commands that change them, the events they
//! become, the envelope with its hash chain, and who may do what.
//!
//! Nothing here does I/O or knows an async runtime: time, ids and the actor arrive with the command.

pub mod actor;
pub mod audit;
pub mod command;
pub mod envelope;
pub mod error;
pub mod event;
pub mod hex_text;
pub mod ids;
pub mod json;
pub mod permissions;
pub mod problem;
pub mod region;
pub mod timestamp;
pub mod values;

pub use actor::{Actor, Role};
pub use command::{Command, CommandContext};
pub use envelope::{Commit, Envelope, GENESIS_HASH};
pub use error::DomainError;
pub use event::Event;
pub use ids::{AggregateId, AggregateKind};
pub use problem::{State, Status, decide, evolve, execute};
pub use region::RegionCode;
