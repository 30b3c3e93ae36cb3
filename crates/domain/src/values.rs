//! Value types shared by commands and events.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The sectors the campaign focused on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    PhosphorusChemical,
    Baijiu,
    CoalMine,
    IndustrialPark,
    NatureReserve,
    CountySewage,
    Landfill,
    TailingsPond,
    Other,
}

impl Sector {
    /// Every sector, in display order.
    pub const ALL: [Sector; 9] = [
        Sector::PhosphorusChemical,
        Sector::Baijiu,
        Sector::CoalMine,
        Sector::IndustrialPark,
        Sector::NatureReserve,
        Sector::CountySewage,
        Sector::Landfill,
        Sector::TailingsPond,
        Sector::Other,
    ];

    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sector::PhosphorusChemical => "phosphorus_chemical",
            Sector::Baijiu => "baijiu",
            Sector::CoalMine => "coal_mine",
            Sector::IndustrialPark => "industrial_park",
            Sector::NatureReserve => "nature_reserve",
            Sector::CountySewage => "county_sewage",
            Sector::Landfill => "landfill",
            Sector::TailingsPond => "tailings_pond",
            Sector::Other => "other",
        }
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sector::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| format!("unknown sector `{s}`"))
    }
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    General,
    Major,
    Serious,
}

/// Fixed at once (立行立改) or by a deadline (限时整改).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeadlineClass {
    Immediate,
    TimeLimited,
}

/// The polluter or site a problem was found at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Source {
    pub name: String,
    /// Unified social credit code (统一社会信用代码), when the source is an organisation.
    #[serde(default)]
    pub credit_code: String,
}

/// A piece of evidence: content hash, media type and where the bytes live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub media_type: String,
    pub uri: String,
}

/// Who must fix a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Responsible {
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// Actor id of a `responsible_entity` token allowed to act on this problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
}

/// An enforcement measure. Money is in fen (1/100 yuan), never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Measure {
    Penalty { amount_fen: u64 },
    DailyPenalty { days: u32, amount_fen: u64 },
    SealSeizure,
    ProductionLimit,
    DetentionReferral,
    CriminalReferral,
}

impl Measure {
    /// The snake_case name of the measure kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Measure::Penalty { .. } => "penalty",
            Measure::DailyPenalty { .. } => "daily_penalty",
            Measure::SealSeizure => "seal_seizure",
            Measure::ProductionLimit => "production_limit",
            Measure::DetentionReferral => "detention_referral",
            Measure::CriminalReferral => "criminal_referral",
        }
    }

    /// The fine in fen (0 for measures without money).
    pub fn amount_fen(&self) -> u64 {
        match self {
            Measure::Penalty { amount_fen } | Measure::DailyPenalty { amount_fen, .. } => *amount_fen,
            _ => 0,
        }
    }
}
