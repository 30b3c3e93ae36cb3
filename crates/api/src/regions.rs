//! Region and grid reference data: GB/T 2260 divisions (Guizhou by default, shipped in the binary) and the
//! project's own grids. Loaded once at start; unknown regions and grids are refused at the API edge.

use anyhow::{Context, bail};
use rectify_domain::RegionCode;
use rectify_domain::region::Level;
use std::collections::BTreeMap;
use std::path::Path;

/// The official Guizhou divisions (see data/guizhou-regions.README.md).
const GUIZHOU_REGIONS: &str = include_str!("../data/guizhou-regions.csv");
/// The project's Guizhou grids: 1,894 grids with 1,920 officers (see data/README.md).
const GUIZHOU_GRIDS: &str = include_str!("../data/guizhou-grids.csv");

/// One administrative division.
#[derive(Debug, Clone)]
pub struct Region {
    pub code: RegionCode,
    pub parent: Option<RegionCode>,
    pub level: Level,
    pub name_zh: String,
    pub name_en: String,
    pub children: Vec<RegionCode>,
    pub grids: Vec<String>,
}

/// One supervision grid of a county.
#[derive(Debug, Clone)]
pub struct Grid {
    pub id: String,
    pub county: RegionCode,
    pub name_zh: String,
    pub name_en: String,
    pub officers: u32,
}

/// All divisions and grids.
#[derive(Debug, Clone)]
pub struct Regions {
    pub root: RegionCode,
    regions: BTreeMap<RegionCode, Region>,
    grids: BTreeMap<String, Grid>,
}

impl Regions {
    /// The built-in Guizhou data.
    pub fn guizhou() -> Regions {
        Regions::parse(GUIZHOU_REGIONS, GUIZHOU_GRIDS).expect("the shipped reference data is valid")
    }

    /// Loads `regions.csv` and `grids.csv` from `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Regions> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()))
        };
        Regions::parse(&read("regions.csv")?, &read("grids.csv")?)
    }

    /// Parses the two CSV files (columns `code,parent,level,name_zh,name_en` and
    /// `id,county,name_zh,name_en,officers`).
    pub fn parse(regions_csv: &str, grids_csv: &str) -> anyhow::Result<Regions> {
        let mut regions = BTreeMap::new();
        let mut root = None;
        for row in csv::Reader::from_reader(regions_csv.as_bytes()).records() {
            let row = row?;
            let code = RegionCode::parse(&row[0]).with_context(|| format!("bad region code {}", &row[0]))?;
            let parent = if row[1].is_empty() {
                None
            } else {
                Some(RegionCode::parse(&row[1]).with_context(|| format!("bad parent {}", &row[1]))?)
            };
            if parent.is_none() {
                root = Some(code);
            }
            regions.insert(
                code,
                Region {
                    code,
                    parent,
                    level: code.level(),
                    name_zh: row[3].into(),
                    name_en: row[4].into(),
                    children: vec![],
                    grids: vec![],
                },
            );
        }
        let Some(root) = root else { bail!("the region data has no root (a row without parent)") };
        let codes: Vec<(RegionCode, Option<RegionCode>)> = regions.values().map(|r| (r.code, r.parent)).collect();
        for (code, parent) in codes {
            if let Some(p) = parent {
                regions.get_mut(&p).with_context(|| format!("{code} names unknown parent {p}"))?.children.push(code);
            }
        }
        let mut grids = BTreeMap::new();
        for row in csv::Reader::from_reader(grids_csv.as_bytes()).records() {
            let row = row?;
            let county = RegionCode::parse(&row[1]).with_context(|| format!("bad county {}", &row[1]))?;
            let region =
                regions.get_mut(&county).with_context(|| format!("grid {} names unknown county {county}", &row[0]))?;
            if region.level != Level::County {
                bail!("grid {} belongs to {county}, which is not a county", &row[0]);
            }
            region.grids.push(row[0].to_owned());
            let officers = row[4].parse().with_context(|| format!("bad officer count for grid {}", &row[0]))?;
            grids.insert(
                row[0].to_owned(),
                Grid { id: row[0].into(), county, name_zh: row[2].into(), name_en: row[3].into(), officers },
            );
        }
        Ok(Regions { root, regions, grids })
    }

    /// One division.
    pub fn region(&self, code: RegionCode) -> Option<&Region> {
        self.regions.get(&code)
    }

    /// One grid.
    pub fn grid(&self, id: &str) -> Option<&Grid> {
        self.grids.get(id)
    }

    /// Every division.
    pub fn all(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    /// Every grid.
    pub fn grids(&self) -> impl Iterator<Item = &Grid> {
        self.grids.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guizhou_has_the_official_divisions_and_the_campaign_grids() {
        let r = Regions::guizhou();
        let count = |level| r.all().filter(|x| x.level == level).count();
        assert_eq!((count(Level::Province), count(Level::Prefecture), count(Level::County)), (1, 9, 88));
        assert_eq!(r.grids().count(), 1894);
        assert_eq!(r.grids().map(|g| g.officers).sum::<u32>(), 1920);
        let guiyang = r.region(RegionCode::parse("520100").unwrap()).unwrap();
        assert_eq!(guiyang.children.len(), 10);
        assert!(r.all().filter(|x| x.level == Level::County).all(|c| !c.grids.is_empty()));
    }
}
