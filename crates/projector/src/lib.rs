//! The read side: folds the event log into materialized views in sled and keeps them current.
//!
//! [`views`] holds the pure fold (what a view *is*), [`store`] persists views together with their checkpoint
//! in one sled batch, and [`runner`] tails the log, applies batches and tells others what changed.

pub mod generations;
pub mod runner;
pub mod store;
pub mod views;

pub use generations::Generations;
pub use runner::{Applied, Projector, ProjectorHandle};
pub use store::{StoreError, VIEW_SCHEMA, ViewStore};
pub use views::{Changes, CounterKey, Counters, Days, DeadlineKey, Empty, LedgerRow, Month, Scope, ViewRead};
