//! Dispatch bulletins (定期调度): the statistics of a region frozen at a log position, with the signed
//! checkpoint of the log at that position, stored in the audit store.
//!
//! The figures are a fold of log positions 1..=position (not a read of the live views, which move on while
//! they are read), so anyone holding the log recomputes them exactly: `rectify audit verify` does, for every
//! bulletin.

use crate::regions::Regions;
use rectify_domain::RegionCode;
use rectify_domain::values::Sector;
use rectify_eventlog::{EventLog, ReadError};
use rectify_projector::{Changes, CounterKey, Empty};
use serde_json::{Map, Value, json};

/// Folds log positions 1..=`until` into fresh counters.
pub async fn fold(log: &dyn EventLog, until: u64) -> Result<Changes, ReadError> {
    let mut changes = Changes::default();
    let mut from = 1;
    while from <= until {
        let max = usize::try_from(until - from + 1).unwrap_or(usize::MAX).min(4096);
        let records = log.read_from(from, max).await?;
        let Some(last) = records.last().map(|r| r.position) else { break };
        for record in records.iter().filter(|r| r.position <= until) {
            apply(&mut changes, record);
        }
        from = last + 1;
    }
    Ok(changes)
}

/// Folds one commit into `changes`.
pub fn apply(changes: &mut Changes, record: &rectify_eventlog::Record) {
    for env in &record.commit.events {
        let Ok(()) = changes.apply(&Empty, record.position, env);
    }
}

fn counters(changes: &Changes, key: &CounterKey) -> Value {
    serde_json::to_value(changes.counters.get(key).copied().unwrap_or_default()).expect("counters serialize")
}

/// The frozen figures of `region`: its counters, by sector, and by child region. Integers only.
pub fn stats(changes: &Changes, regions: &Regions, region: RegionCode) -> Value {
    let mut sectors = Map::new();
    for sector in Sector::ALL {
        sectors.insert(
            sector.as_str().to_owned(),
            counters(changes, &CounterKey::region(region).with_sector(Some(sector))),
        );
    }
    let mut children = Map::new();
    for child in regions.region(region).map(|r| r.children.clone()).unwrap_or_default() {
        children.insert(child.to_string(), counters(changes, &CounterKey::region(child)));
    }
    json!({
        "summary": counters(changes, &CounterKey::region(region)),
        "sectors": sectors,
        "regions": children,
    })
}
