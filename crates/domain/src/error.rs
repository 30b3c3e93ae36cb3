//! Why the domain refuses a command.

use thiserror::Error;

/// A refusal. Each variant maps to one HTTP status at the edge (403, 404, 409, 422).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The actor's role or region does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The same person may not report or submit and then accept (separation of duties).
    #[error("separation of duties: {0}")]
    SeparationOfDuties(String),
    /// The command targets a problem that does not exist (or an inspection, for a problem command).
    #[error("not found: {0}")]
    NotFound(String),
    /// The command is not valid in the aggregate's current state.
    #[error("{command} is not allowed while the problem is {status}")]
    InvalidState { command: &'static str, status: String },
    /// A field of the command is invalid.
    #[error("invalid `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

impl DomainError {
    /// Shorthand for an invalid field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> DomainError {
        DomainError::Invalid { field, message: message.into() }
    }
}
