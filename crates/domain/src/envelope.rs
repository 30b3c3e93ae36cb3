//! The envelope every event travels in, and the hash chain that links a stream's events.
//!
//! `hash = sha256(canonical bytes of the envelope without `hash`)`, where the canonical bytes are the
//! compact JSON of the fields in declaration order; `prev_hash` is part of those bytes, so altering,
//! dropping or reordering an event breaks every later hash of its stream.

use crate::actor::Actor;
use crate::command::CommandContext;
use crate::event::Event;
use crate::hex_text;
use crate::ids::AggregateId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Schema version written with new events; older versions are upcast on decode.
pub const SCHEMA_VERSION: u16 = 1;

/// `prev_hash` of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `<stream>/<version>`: unique, and derivable without randomness.
    pub event_id: String,
    pub stream: AggregateId,
    /// The aggregate version this event creates (1 for the first).
    pub version: u64,
    pub schema: u16,
    #[serde(serialize_with = "crate::timestamp::serialize", deserialize_with = "crate::timestamp::deserialize")]
    pub occurred_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::timestamp::serialize", deserialize_with = "crate::timestamp::deserialize")]
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub command_id: String,
    pub correlation_id: String,
    pub prev_hash: String,
    pub event: Event,
    pub hash: String,
}

/// The envelope's fields that the hash covers, borrowed, in canonical order.
#[derive(Serialize)]
struct Hashed<'a> {
    event_id: &'a str,
    stream: &'a AggregateId,
    version: u64,
    schema: u16,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    occurred_at: &'a DateTime<Utc>,
    #[serde(serialize_with = "crate::timestamp::serialize")]
    recorded_at: &'a DateTime<Utc>,
    actor: &'a Actor,
    command_id: &'a str,
    correlation_id: &'a str,
    prev_hash: &'a str,
    event: &'a Event,
}

impl Envelope {
    /// The hash this envelope should carry, recomputed from its content.
    pub fn compute_hash(&self) -> String {
        let bytes = serde_json::to_vec(&self.hashed()).expect("envelopes always serialize");
        hex_text::encode(Sha256::digest(&bytes))
    }

    fn hashed(&self) -> Hashed<'_> {
        Hashed {
            event_id: &self.event_id,
            stream: &self.stream,
            version: self.version,
            schema: self.schema,
            occurred_at: &self.occurred_at,
            recorded_at: &self.recorded_at,
            actor: &self.actor,
            command_id: &self.command_id,
            correlation_id: &self.correlation_id,
            prev_hash: &self.prev_hash,
            event: &self.event,
        }
    }
}

/// What one command appends, atomically, as one log message: all of its events, in order.
#[derive(Clone, Serialize, Deserialize)]
pub struct Commit {
    pub events: Vec<Envelope>,
    /// The encoding, when [`Commit::seal`] made it while hashing: an envelope's stored JSON is its hashed
    /// bytes with `hash` added at the end, so an append need not serialize the commit again.
    #[serde(skip)]
    sealed_bytes: Option<Arc<[u8]>>,
}

impl PartialEq for Commit {
    fn eq(&self, other: &Commit) -> bool {
        self.events == other.events
    }
}

impl Eq for Commit {}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit").field("events", &self.events).finish()
    }
}

impl Commit {
    /// A commit of `events` as they are (decoded, or built by hand).
    pub fn new(events: Vec<Envelope>) -> Commit {
        Commit { events, sealed_bytes: None }
    }

    /// Wraps `events` in envelopes that continue the stream at `version` whose last hash is `prev_hash`.
    pub fn seal(
        stream: &AggregateId,
        version: u64,
        prev_hash: &str,
        ctx: &CommandContext,
        events: Vec<Event>,
    ) -> Commit {
        let mut prev = prev_hash.to_owned();
        let mut bytes = Vec::with_capacity(1024);
        bytes.extend_from_slice(br#"{"events":["#);
        let events = events
            .into_iter()
            .zip(version + 1..)
            .map(|(event, version)| {
                let mut env = Envelope {
                    event_id: format!("{stream}/{version}"),
                    stream: stream.clone(),
                    version,
                    schema: SCHEMA_VERSION,
                    occurred_at: ctx.occurred_at,
                    recorded_at: ctx.recorded_at,
                    actor: ctx.actor.clone(),
                    command_id: ctx.command_id.clone(),
                    correlation_id: ctx.correlation_id.clone(),
                    prev_hash: std::mem::take(&mut prev),
                    event,
                    hash: String::new(),
                };
                // After the first envelope (which ends in `}`; the prefix ends in `[`).
                if bytes.last() == Some(&b'}') {
                    bytes.push(b',');
                }
                let start = bytes.len();
                serde_json::to_writer(&mut bytes, &env.hashed()).expect("envelopes always serialize");
                env.hash = hex_text::encode(Sha256::digest(&bytes[start..]));
                bytes.pop(); // the closing brace: `hash` is the last field
                bytes.extend_from_slice(br#","hash":""#);
                bytes.extend_from_slice(env.hash.as_bytes());
                bytes.extend_from_slice(br#""}"#);
                prev = env.hash.clone();
                env
            })
            .collect();
        bytes.extend_from_slice(b"]}");
        Commit { events, sealed_bytes: Some(bytes.into()) }
    }

    /// The stream this commit belongs to.
    pub fn stream(&self) -> &AggregateId {
        &self.first().stream
    }

    /// The command that produced this commit.
    pub fn command_id(&self) -> &str {
        &self.first().command_id
    }

    /// The stream version after this commit.
    pub fn last_version(&self) -> u64 {
        self.events.last().expect("a commit is never empty").version
    }

    /// The hash of the last event (the next commit's `prev_hash`).
    pub fn last_hash(&self) -> &str {
        &self.events.last().expect("a commit is never empty").hash
    }

    fn first(&self) -> &Envelope {
        self.events.first().expect("a commit is never empty")
    }

    /// Encodes the commit as stored on the log.
    pub fn encode(&self) -> Vec<u8> {
        match &self.sealed_bytes {
            Some(bytes) => {
                debug_assert_eq!(**bytes, *serde_json::to_vec(self).unwrap(), "a sealed commit was changed");
                bytes.to_vec()
            }
            None => serde_json::to_vec(self).expect("commits always serialize"),
        }
    }

    /// Decodes a stored commit, checking the structure that the type system cannot: non-empty, one stream,
    /// one command, consecutive versions, known schema.
    pub fn decode(bytes: &[u8]) -> Result<Commit, DecodeError> {
        let commit: Commit = crate::json::from_bytes(bytes).map_err(DecodeError)?;
        let first = commit.events.first().ok_or_else(|| DecodeError("commit holds no events".into()))?;
        for (i, e) in commit.events.iter().enumerate() {
            if e.schema == 0 || e.schema > SCHEMA_VERSION {
                return Err(DecodeError(format!("unknown schema version {}", e.schema)));
            }
            // checked: a forged commit may start at u64::MAX.
            let version = first.version.checked_add(i as u64);
            if e.stream != first.stream || e.command_id != first.command_id || version != Some(e.version) {
                return Err(DecodeError(format!("event {} does not continue the commit", e.event_id)));
            }
        }
        Ok(commit)
    }

    /// Checks that the commit continues a stream whose last hash is `prev_hash` and that every hash matches
    /// its content. Returns the first bad event's id.
    pub fn verify_chain(&self, prev_hash: &str) -> Result<(), String> {
        let mut prev = prev_hash;
        for e in &self.events {
            if e.prev_hash != prev || e.compute_hash() != e.hash {
                return Err(e.event_id.clone());
            }
            prev = &e.hash;
        }
        Ok(())
    }
}

/// A stored commit could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable commit: {0}")]
pub struct DecodeError(pub String);
