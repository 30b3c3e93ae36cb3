//! The embedded log's index, in memory: where each record is in the file, each stream's head and
//! positions, and which position each command id was appended at. Built by reading the file at open and
//! extended by the writer once a batch is written (never before: a failed write leaves it as it was).
//! The file alone is the truth.

use super::Mark;
use super::file::Loc;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

/// Where each position's record is (`locs[position - 1]`). A position the file lacks (a record removed by
/// hand) is a hole, which reads skip and `rectify audit verify` names.
#[derive(Default)]
pub(super) struct Locations(Vec<Option<Loc>>);

impl Locations {
    /// Records `position` at `loc`; positions must grow.
    pub fn push(&mut self, position: u64, loc: Loc) -> Result<(), String> {
        let last = self.last();
        if position <= last {
            return Err(format!("position {position} follows position {last}"));
        }
        self.0.resize((position - 1) as usize, None);
        self.0.push(Some(loc));
        Ok(())
    }

    /// The last position held (0 for none).
    pub fn last(&self) -> u64 {
        self.0.len() as u64
    }

    pub fn get(&self, position: u64) -> Option<Loc> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        self.0.get(i).copied().flatten()
    }

    /// The records of up to `max` positions from `from` to `to`, holes left out.
    pub fn range(&self, from: u64, to: u64, max: usize) -> Vec<(u64, Loc)> {
        let (from, to) = (from.max(1), to.min(self.last()));
        (from..=to).filter_map(|p| Some((p, self.get(p)?))).take(max).collect()
    }
}

/// One stream: its head and every position it has.
struct Stream {
    head: Mark,
    positions: Vec<u64>,
}

/// The log's index.
#[derive(Default)]
pub(super) struct Index {
    pub commits: Locations,
    pub audit: Locations,
    streams: HashMap<Box<str>, Stream>,
    /// Command id hash → position. Only the hash is kept (a million command ids would take ~70 MB); a hit
    /// is confirmed against the record's own command id ([`Index::command_candidate`]).
    commands: HashMap<u64, u64>,
    /// Command ids whose hash an earlier command id already had.
    collided: HashMap<Box<str>, u64>,
    hasher: foldhash::quality::FixedState,
}

impl Index {
    /// Adds a commit written at `loc`.
    pub fn add_commit(&mut self, loc: Loc, stream: &str, command_id: &str, mark: Mark) -> Result<(), String> {
        self.commits.push(mark.position, loc)?;
        match self.streams.get_mut(stream) {
            Some(s) => {
                s.head = mark;
                s.positions.push(mark.position);
            }
            None => {
                self.streams.insert(stream.into(), Stream { head: mark, positions: vec![mark.position] });
            }
        }
        match self.commands.entry(self.hasher.hash_one(command_id)) {
            Entry::Vacant(free) => {
                free.insert(mark.position);
            }
            Entry::Occupied(_) => {
                self.collided.insert(command_id.into(), mark.position);
            }
        }
        Ok(())
    }

    pub fn head(&self, stream: &str) -> Option<Mark> {
        self.streams.get(stream).map(|s| s.head)
    }

    pub fn positions(&self, stream: &str) -> &[u64] {
        self.streams.get(stream).map_or(&[], |s| &s.positions)
    }

    /// The position that may hold `command_id`, to be confirmed by reading the record there.
    pub fn command_candidate(&self, command_id: &str) -> Option<u64> {
        let collided = self.collided.get(command_id);
        collided.or_else(|| self.commands.get(&self.hasher.hash_one(command_id))).copied()
    }
}
