//! Audit without trusting the operator: the pure parts.
//!
//! - [`merkle`]: an RFC 9162 Merkle tree over the log (one leaf per commit, in log order), inclusion and
//!   consistency proofs and their verification.
//! - [`signed`]: what the service signs with Ed25519 — seals over the commits a writer appended, checkpoints
//!   of the tree, dispatch bulletins — their canonical bytes, and the trust file of public keys.
//! - [`verify`]: the whole-log verification as a fold that names the first bad event.
//!
//! Keys are handed in; nothing here reads a file, a clock or a random source.

pub mod merkle;
pub mod signed;
pub mod verify;

pub use merkle::{Hash, MemoryTree};
pub use signed::{AuditRecord, Bulletin, Checkpoint, Seal, SealEntry, SignatureError, Trust, TrustedKey};
pub use verify::{Finding, FindingKind, LogVerifier, Report};

/// The Ed25519 types callers need to hold keys.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
