//! The embedded log's index, in memory: where each record is in the file, each stream's head and
//! positions, and which position each command id was appended at. Built by reading the file at open and
//! extended by the writer once a batch is written (never before: a failed write leaves it as it was).
//! The file alone is the truth.

use super::Mark;
use super::file::Loc;
use super::sharded::ShardedMap;
use foldhash::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;

/// Where each position's record is (`position - 1` counted through the chunks). A position the file lacks
/// (a record removed by hand) is a hole, which reads skip and `rectify audit verify` names: [`HOLE`], as
/// no record has length 0.
#[derive(Default)]
pub(super) struct Locations {
    chunks: Vec<Vec<Loc>>,
    len: u64,
}

const HOLE: Loc = Loc { offset: 0, len: 0 };

/// Positions per chunk (1 MiB of locations). One array for all would be copied whole each time it grows,
/// holding the index's lock: 11 ms at a million positions, 41 ms at four. Chunks are never moved.
const CHUNK: usize = 1 << 16;

impl Locations {
    /// Records `position` at `loc`; positions must grow.
    pub fn push(&mut self, position: u64, loc: Loc) -> Result<(), String> {
        let last = self.last();
        if position <= last {
            return Err(format!("position {position} follows position {last}"));
        }
        while self.len + 1 < position {
            self.append(HOLE);
        }
        self.append(loc);
        Ok(())
    }

    fn append(&mut self, loc: Loc) {
        if self.chunks.last().is_none_or(|chunk| chunk.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut().expect("a chunk with room").push(loc);
        self.len += 1;
    }

    /// The last position held (0 for none).
    pub fn last(&self) -> u64 {
        self.len
    }

    pub fn get(&self, position: u64) -> Option<Loc> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK).copied().filter(|loc| *loc != HOLE)
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
    /// Both grow with the log: sharded, so that growing never stalls the writer for long.
    streams: ShardedMap<Box<str>, Stream>,
    /// Command id hash → position. Only the hash is kept (a million command ids would take ~70 MB); a hit
    /// is confirmed against the record's own command id ([`Index::command_candidate`]).
    commands: ShardedMap<u64, u64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_found_across_chunks_and_holes_that_span_them() {
        let loc = |position: u64| Loc { offset: position * 100, len: 10 };
        let mut commits = Locations::default();
        let n = 2 * CHUNK as u64 + 5;
        let skipped = CHUNK as u64 - 2..CHUNK as u64 + 3;
        for position in (1..=n).filter(|p| !skipped.contains(p)) {
            commits.push(position, loc(position)).unwrap();
        }
        assert_eq!(commits.last(), n);
        for position in [1, CHUNK as u64 - 3, CHUNK as u64 + 3, 2 * CHUNK as u64, 2 * CHUNK as u64 + 1, n] {
            assert_eq!(commits.get(position), Some(loc(position)), "position {position}");
        }
        assert!(skipped.clone().all(|p| commits.get(p).is_none()), "holes");
        assert_eq!((commits.get(0), commits.get(n + 1)), (None, None));
        let around: Vec<u64> = commits.range(CHUNK as u64 - 4, CHUNK as u64 + 4, 100).iter().map(|(p, _)| *p).collect();
        assert_eq!(around, [CHUNK as u64 - 4, CHUNK as u64 - 3, CHUNK as u64 + 3, CHUNK as u64 + 4]);
    }

    #[test]
    fn positions_grow_holes_are_skipped_and_command_ids_confirmed_by_position() {
        let loc = |offset| Loc { offset, len: 10 };
        let mut commits = Locations::default();
        commits.push(1, loc(8)).unwrap();
        commits.push(3, loc(18)).unwrap();
        assert_eq!(commits.get(2), None, "a hole");
        assert_eq!(commits.range(1, 9, 10), [(1, loc(8)), (3, loc(18))]);
        assert_eq!(commits.range(1, 9, 1), [(1, loc(8))]);
        assert!(commits.push(3, loc(28)).is_err() && commits.push(2, loc(28)).is_err(), "positions only grow");

        let mut index = Index::default();
        index.add_commit(loc(8), "P520102-a", "cmd-1", Mark { position: 1, version: 1 }).unwrap();
        index.add_commit(loc(18), "P520102-a", "cmd-2", Mark { position: 2, version: 2 }).unwrap();
        assert_eq!(index.head("P520102-a"), Some(Mark { position: 2, version: 2 }));
        assert_eq!(index.positions("P520102-a"), [1, 2]);
        assert_eq!((index.command_candidate("cmd-2"), index.command_candidate("cmd-3")), (Some(2), None));

        // An id whose hash another id already has is kept by its text.
        let hash = index.hasher.hash_one("cmd-4");
        index.commands.insert(hash, 1);
        index.add_commit(loc(28), "P520102-b", "cmd-4", Mark { position: 3, version: 1 }).unwrap();
        assert_eq!(index.command_candidate("cmd-4"), Some(3));
    }
}
