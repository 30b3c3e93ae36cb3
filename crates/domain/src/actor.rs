//! Who acts: an authenticated principal with a role and the region (and grid) it is bound to.

use crate::region::RegionCode;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The roles of DESIGN.md, plus `system` for the service's own commands (the deadline watcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    GridOfficer,
    ResponsibleEntity,
    CountyBureau,
    CityBureau,
    Province,
    Inspector,
    Public,
    System,
}

impl Role {
    /// Every role, in matrix order.
    pub const ALL: [Role; 8] = [
        Role::GridOfficer,
        Role::ResponsibleEntity,
        Role::CountyBureau,
        Role::CityBureau,
        Role::Province,
        Role::Inspector,
        Role::Public,
        Role::System,
    ];

    /// The snake_case name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::GridOfficer => "grid_officer",
            Role::ResponsibleEntity => "responsible_entity",
            Role::CountyBureau => "county_bureau",
            Role::CityBureau => "city_bureau",
            Role::Province => "province",
            Role::Inspector => "inspector",
            Role::Public => "public",
            Role::System => "system",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown role `{s}`"))
    }
}

/// An authenticated principal. `region` is the region it answers for (the province for `inspector`);
/// `grid` is set for grid officers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub role: Role,
    pub region: RegionCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<String>,
}
