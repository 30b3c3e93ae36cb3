//! Persistence of the views in sled: one tree, one batch per applied log batch, checkpoint included, so a
//! crash never double-counts or skips.
//!
//! Keys: `l:<problem id>` → ledger row, `c:<scope>|<sector>[|month=YYYY-MM]` → counters, `t:<region>|<sector>` →
//! days-to-rectify histogram (`[[days, fixed], …]`), `i:<command id>` → command result
//! (only over a log without a command index of its own, see [`rectify_eventlog::EventLog::remembers_every_command`]),
//! `d:<due, ms since the epoch, 15 digits>|<problem id>` → due time, the deadline watcher's index ([`DeadlineKey`]),
//! `m:checkpoint` → last applied log position (big-endian u64). Values are JSON; counters are stored as
//! the array of their figures in declaration order ([`Counters::to_array`]).

use crate::views::{Changes, CounterKey, Counters, Days, DeadlineKey, LedgerRow, ViewRead};
use rectify_domain::AggregateId;
use std::path::Path;

const CHECKPOINT: &[u8] = b"m:checkpoint";
/// Bytes of sled's page cache for the views (sled keeps far more than this in memory; see the README).
const CACHE_BYTES: u64 = 32 << 20;
const SCHEMA: &[u8] = b"m:schema";

/// The version of the views' layout and meaning. Bump it whenever a fold or a key changes — the domain's
/// `evolve` included, as the pipeline decides commands on a ledger row's state: a projector that finds
/// another version rebuilds its views from the log (beside the old ones) before using them.
/// 2: counters stored as arrays. 3: command rows only when the log has no command index of its own.
/// 4: the deadline index. 5: days to rectify as one histogram row per region × sector.
pub const VIEW_SCHEMA: u32 = 5;

/// A failure of the view store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("view store: {0}")]
    Sled(#[from] sled::Error),
    #[error("view store: {0}")]
    Io(#[from] std::io::Error),
    #[error("view store holds an undecodable value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
}

impl StoreError {
    /// Whether (and how) the disk refused a write: sled answers every later call with that failure.
    pub fn disk_refusal(&self) -> Option<rectify_eventlog::DiskRefusal> {
        match self {
            StoreError::Sled(e) => rectify_eventlog::DiskRefusal::of_sled(e),
            StoreError::Io(e) => rectify_eventlog::DiskRefusal::of(e),
            StoreError::Corrupt { .. } => None,
        }
    }
}

/// The materialized views of one projector.
#[derive(Clone)]
pub struct ViewStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    rectify_domain::json::from_bytes(bytes)
        .map_err(|reason| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), reason })
}

fn encode_counters(c: &Counters) -> Vec<u8> {
    serde_json::to_vec(&c.to_array()).expect("numbers serialize")
}

fn decode_counters(key: &[u8], bytes: &[u8]) -> Result<Counters, StoreError> {
    decode::<[i64; Counters::FIELDS]>(key, bytes).map(Counters::from_array)
}

fn days_key(key: &CounterKey) -> Vec<u8> {
    format!("t:{}", key.encode()).into_bytes()
}

fn decode_days(key: &[u8], bytes: &[u8]) -> Result<Days, StoreError> {
    decode::<Vec<(i64, i64)>>(key, bytes).map(|pairs| pairs.into_iter().collect())
}

fn ledger_key(id: &AggregateId) -> Vec<u8> {
    format!("l:{id}").into_bytes()
}

fn counter_key(key: &CounterKey) -> Vec<u8> {
    format!("c:{}", key.encode()).into_bytes()
}

/// Deadline keys sort by due time: milliseconds since the epoch, zero-padded (before 1970 counts as 1970).
fn deadline_prefix(due: chrono::DateTime<chrono::Utc>) -> String {
    format!("d:{:015}|", due.timestamp_millis().max(0))
}

fn deadline_key(key: &DeadlineKey) -> Vec<u8> {
    format!("{}{}", deadline_prefix(key.due), key.id).into_bytes()
}

impl ViewStore {
    /// Opens (or creates) the views under `dir`.
    pub fn open(dir: &Path) -> Result<ViewStore, StoreError> {
        // sled caches up to 1 GB by default; the views need far less to answer quickly.
        let db = rectify_eventlog::sled_open::open(&sled::Config::new().path(dir).cache_capacity(CACHE_BYTES))?;
        let tree = db.open_tree("views")?;
        Ok(ViewStore { db, tree })
    }

    /// Records that these views follow the current [`VIEW_SCHEMA`] (done when a generation is created).
    pub fn stamp_schema(&self) -> Result<(), StoreError> {
        self.tree.insert(SCHEMA, &VIEW_SCHEMA.to_be_bytes())?;
        Ok(())
    }

    /// Whether these views were built by the current [`VIEW_SCHEMA`].
    pub fn schema_is_current(&self) -> Result<bool, StoreError> {
        Ok(self.tree.get(SCHEMA)?.is_some_and(|v| v.as_ref() == VIEW_SCHEMA.to_be_bytes()))
    }

    /// The last log position included in the views (0 when empty).
    pub fn checkpoint(&self) -> Result<u64, StoreError> {
        Ok(self.tree.get(CHECKPOINT)?.map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))))
    }

    /// Writes `changes` and the new checkpoint atomically.
    pub fn commit(&self, changes: &Changes, checkpoint: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, row) in &changes.ledger {
            batch.insert(ledger_key(id), serde_json::to_vec(row).expect("rows serialize"));
        }
        for (key, counters) in &changes.counters {
            batch.insert(counter_key(key), encode_counters(counters));
        }
        for (key, days) in &changes.days {
            if days.is_empty() {
                batch.remove(days_key(key));
            } else {
                let pairs: Vec<(i64, i64)> = days.iter().map(|(d, n)| (*d, *n)).collect();
                batch.insert(days_key(key), serde_json::to_vec(&pairs).expect("numbers serialize"));
            }
        }
        for (key, present) in &changes.deadlines {
            if *present {
                batch.insert(deadline_key(key), serde_json::to_vec(&key.due).expect("times serialize"));
            } else {
                batch.remove(deadline_key(key));
            }
        }
        for (command, result) in &changes.commands {
            batch.insert(format!("i:{command}").into_bytes(), serde_json::to_vec(result).expect("results serialize"));
        }
        batch.insert(CHECKPOINT, &checkpoint.to_be_bytes());
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Flushes to disk (at shutdown; views can always be rebuilt, so batches need not wait for it).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// The ledger row of one problem.
    pub fn ledger_row(&self, id: &AggregateId) -> Result<Option<LedgerRow>, StoreError> {
        let key = ledger_key(id);
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// The counters of one scope × sector.
    pub fn counter(&self, key: &CounterKey) -> Result<Counters, StoreError> {
        let k = counter_key(key);
        Ok(self.tree.get(&k)?.map(|v| decode_counters(&k, &v)).transpose()?.unwrap_or_default())
    }

    /// The days-to-rectify histogram of one region × sector.
    pub fn days(&self, key: &CounterKey) -> Result<Days, StoreError> {
        let k = days_key(key);
        Ok(self.tree.get(&k)?.map(|v| decode_days(&k, &v)).transpose()?.unwrap_or_default())
    }

    /// The trend of one scope × sector: its counters by month (`YYYY-MM`), in month order.
    pub fn months(&self, key: &CounterKey) -> Result<Vec<(String, Counters)>, StoreError> {
        let prefix = format!("c:{}|month=", key.encode());
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let month = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((month, decode_counters(&k, &v)?));
        }
        Ok(out)
    }

    /// The problems of the deadline index due before `now` (to the millisecond), earliest first.
    pub fn due_before(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<AggregateId>, StoreError> {
        let mut out = Vec::new();
        for key in self.tree.range(b"d:".to_vec()..deadline_prefix(now).into_bytes()).keys() {
            let key = key?;
            let id = std::str::from_utf8(&key)
                .ok()
                .and_then(|k| k.split_once('|'))
                .and_then(|(_, id)| AggregateId::parse(id));
            out.push(id.ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "not a deadline key".into(),
            })?);
        }
        Ok(out)
    }

    /// The result of an applied command: (stream, version, position).
    pub fn command(&self, command_id: &str) -> Result<Option<(AggregateId, u64, u64)>, StoreError> {
        let key = format!("i:{command_id}").into_bytes();
        self.tree.get(&key)?.map(|v| decode(&key, &v)).transpose()
    }

    /// Ledger rows whose id starts with `id_prefix`, in id order, after `after` (exclusive), that pass
    /// `keep`; at most `limit` of them.
    pub fn ledger_page(
        &self,
        id_prefix: &str,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&LedgerRow) -> bool,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        let prefix = format!("l:{id_prefix}");
        let start = match after {
            Some(a) => {
                let mut k = format!("l:{a}").into_bytes();
                k.push(0);
                k
            }
            None => prefix.clone().into_bytes(),
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let row: LedgerRow = decode(&k, &v)?;
            if keep(&row) {
                out.push(row);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every stored entry except the checkpoint, in key order, as (key, JSON value; counters as objects): what
    /// a rebuild must reproduce. One at a time, so that comparing millions of rows needs no memory.
    pub fn entries(&self) -> impl Iterator<Item = Result<(String, serde_json::Value), StoreError>> + use<> {
        self.tree.iter().filter_map(|item| {
            let entry = item.map_err(StoreError::from).and_then(|(k, v)| {
                if k.as_ref() == CHECKPOINT || k.as_ref() == SCHEMA {
                    return Ok(None);
                }
                let value = if k.starts_with(b"c:") {
                    serde_json::to_value(decode_counters(&k, &v)?).expect("counters serialize")
                } else {
                    decode(&k, &v)?
                };
                Ok(Some((String::from_utf8_lossy(&k).into_owned(), value)))
            });
            entry.transpose()
        })
    }

    /// How many entries [`ViewStore::entries`] yields (read without decoding them).
    pub fn count_entries(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for key in self.tree.iter().keys() {
            let key = key?;
            n += usize::from(key.as_ref() != CHECKPOINT && key.as_ref() != SCHEMA);
        }
        Ok(n)
    }

    /// [`ViewStore::entries`], all of them.
    pub fn dump(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.entries().collect()
    }
}

impl ViewRead for ViewStore {
    type Error = StoreError;

    fn ledger(&self, id: &AggregateId) -> Result<Option<LedgerRow>, StoreError> {
        self.ledger_row(id)
    }

    fn counters(&self, key: &CounterKey) -> Result<Counters, StoreError> {
        self.counter(key)
    }

    fn days(&self, key: &CounterKey) -> Result<Days, StoreError> {
        ViewStore::days(self, key)
    }
}
