//! Aggregate ids. An id embeds its county code so that its log subject is known without a lookup:
//! `P520102-01J9Z…` is a problem in county 520102, `I520102-…` an inspection there.

use crate::region::RegionCode;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which aggregate a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    Problem,
    Inspection,
}

/// The id of one aggregate's stream: kind letter, county code, `-`, a unique suffix of `[0-9A-Za-z_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AggregateId(String);

impl AggregateId {
    /// Builds an id from its parts; `suffix` must be 1–64 characters of `[0-9A-Za-z_]`.
    pub fn new(kind: AggregateKind, county: RegionCode, suffix: &str) -> Option<AggregateId> {
        let letter = match kind {
            AggregateKind::Problem => 'P',
            AggregateKind::Inspection => 'I',
        };
        AggregateId::parse(&format!("{letter}{county}-{suffix}"))
    }

    /// Parses and validates an id (safe to use as one NATS subject token).
    pub fn parse(s: &str) -> Option<AggregateId> {
        let (head, suffix) = s.split_once('-')?;
        let ok_suffix =
            !suffix.is_empty() && suffix.len() <= 64 && suffix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let ok_head = head.len() == 7
            && matches!(head.as_bytes()[0], b'P' | b'I')
            && RegionCode::parse(&head[1..]).is_some_and(|c| c.level() == crate::region::Level::County);
        (ok_suffix && ok_head).then(|| AggregateId(s.to_owned()))
    }

    /// Problem or inspection.
    pub fn kind(&self) -> AggregateKind {
        if self.0.starts_with('P') { AggregateKind::Problem } else { AggregateKind::Inspection }
    }

    /// The county embedded in the id.
    pub fn county(&self) -> RegionCode {
        RegionCode::parse(&self.0[1..7]).expect("validated at construction")
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AggregateId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        AggregateId::parse(&s).ok_or_else(|| format!("`{s}` is not a valid aggregate id"))
    }
}

impl From<AggregateId> for String {
    fn from(id: AggregateId) -> String {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_embed_their_county() {
        let c = RegionCode::parse("520102").unwrap();
        let id = AggregateId::new(AggregateKind::Problem, c, "01J9Z").unwrap();
        assert_eq!(id.as_str(), "P520102-01J9Z");
        assert_eq!(id.county(), c);
        assert_eq!(id.kind(), AggregateKind::Problem);
        assert_eq!(AggregateId::parse("I520102-x").unwrap().kind(), AggregateKind::Inspection);
    }

    #[test]
    fn rejects_ids_unsafe_for_subjects() {
        for bad in ["P520102-", "P520100-abc", "X520102-abc", "P520102-a.b", "P520102-a*", "P520102-a b", "P52010-abc"]
        {
            assert_eq!(AggregateId::parse(bad), None, "{bad}");
        }
    }
}
