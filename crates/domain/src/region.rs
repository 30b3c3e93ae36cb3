//! GB/T 2260 six-digit region codes and their hierarchy, derived from the digits alone.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Level of a division in the province → prefecture → county hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    Prefecture,
    County,
}

/// A six-digit GB/T 2260 code such as `520102`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(u32);

impl RegionCode {
    /// Parses six ASCII digits that are not all zero.
    pub fn parse(s: &str) -> Option<RegionCode> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = s.parse().ok()?;
        (n >= 100_000).then_some(RegionCode(n))
    }

    /// The level implied by the trailing zeros.
    pub fn level(self) -> Level {
        if self.0.is_multiple_of(10_000) {
            Level::Province
        } else if self.0.is_multiple_of(100) {
            Level::Prefecture
        } else {
            Level::County
        }
    }

    /// The province this code belongs to (itself for a province).
    pub fn province(self) -> RegionCode {
        RegionCode(self.0 / 10_000 * 10_000)
    }

    /// The prefecture this code belongs to (itself for a prefecture; the province for a province).
    pub fn prefecture(self) -> RegionCode {
        match self.level() {
            Level::Province => self,
            _ => RegionCode(self.0 / 100 * 100),
        }
    }

    /// Whether `other` is this region or lies inside it.
    pub fn contains(self, other: RegionCode) -> bool {
        match self.level() {
            Level::Province => other.province() == self,
            Level::Prefecture => other.level() != Level::Province && other.prefecture() == self,
            Level::County => other == self,
        }
    }

    /// The scopes a county-level fact is counted in: province, prefecture, county (deduplicated).
    pub fn scopes(self) -> Vec<RegionCode> {
        let mut out = vec![self.province()];
        for c in [self.prefecture(), self] {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl TryFrom<String> for RegionCode {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RegionCode::parse(&s).ok_or_else(|| format!("`{s}` is not a six-digit region code"))
    }
}

impl From<RegionCode> for String {
    fn from(c: RegionCode) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn hierarchy_follows_the_digits() {
        assert_eq!(r("520000").level(), Level::Province);
        assert_eq!(r("520100").level(), Level::Prefecture);
        assert_eq!(r("520102").level(), Level::County);
        assert_eq!(r("520102").prefecture(), r("520100"));
        assert!(r("520000").contains(r("520102")));
        assert!(r("520100").contains(r("520102")));
        assert!(!r("520200").contains(r("520102")));
        assert!(!r("520102").contains(r("520100")));
        assert!(!r("520100").contains(r("520000")));
        assert_eq!(r("520102").scopes(), vec![r("520000"), r("520100"), r("520102")]);
        assert_eq!(r("520100").scopes(), vec![r("520000"), r("520100")]);
    }

    #[test]
    fn rejects_malformed_codes() {
        for bad in ["", "52010", "5201020", "52a102", "000000", "-52010"] {
            assert_eq!(RegionCode::parse(bad), None, "{bad}");
        }
    }
}
