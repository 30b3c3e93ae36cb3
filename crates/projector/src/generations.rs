//! Generations of the views: `<root>/gen-<n>` directories and a `CURRENT` file naming the one in use.
//!
//! A rebuild fills the next generation beside the current one and switches by rewriting `CURRENT`
//! atomically (write, fsync, rename), so a crash at any point leaves either the old or the new views in use,
//! never a mix.
//!
//! # A power loss
//!
//! The projector does not wait for the disk: sled writes the views' buffers with `sync_file_range`, which
//! neither empties the disk's write cache nor keeps the order in which writes reach it, and syncs the file
//! only every 500 ms. A crash of the process loses nothing (the kernel still holds every write), but a power
//! loss or a kernel crash can leave the files torn in ways sled cannot always detect. So while views are
//! open, an `OPEN` file holds the id of the boot that opened them; it is removed after their last flush
//! ([`Generations::close`]). Views found still open by an earlier boot are not trusted: a new, empty
//! generation replaces them, and the projector folds the whole log into it.

use crate::store::{StoreError, ViewStore};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that marks views open, holding the id of the boot that opened them.
const OPEN: &str = "OPEN";

/// This boot's id (Linux); `None` where the kernel does not give one.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// The views directory of one projector.
#[derive(Debug, Clone)]
pub struct Generations {
    root: PathBuf,
}

impl Generations {
    /// The generations under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Generations {
        Generations { root: root.into() }
    }

    fn dir(&self, generation: u64) -> PathBuf {
        self.root.join(format!("gen-{generation}"))
    }

    /// The generation in use, if any.
    pub fn current(&self) -> std::io::Result<Option<u64>> {
        match std::fs::read_to_string(self.root.join("CURRENT")) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                std::io::Error::other(format!("{} holds no generation number", self.root.join("CURRENT").display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the generation in use, creating generation 1 if there is none, and marks the views open. Views
    /// left open by an earlier boot are replaced by an empty generation (see the module's "A power loss").
    pub fn open_current(&self) -> Result<(ViewStore, u64), StoreError> {
        self.open_current_in(boot_id().as_deref())
    }

    /// [`Generations::open_current`] in the boot `boot` (`None`: unknown, so any views left open are torn).
    fn open_current_in(&self, boot: Option<&str>) -> Result<(ViewStore, u64), StoreError> {
        let opened = match self.current()? {
            Some(generation) if self.left_open_by_another_boot(boot)? => {
                let next = generation + 1;
                tracing::warn!(
                    generation,
                    "the views were open when the machine went down; building them again from the log"
                );
                let store = self.create(next)?;
                self.switch(next)?;
                self.remove_others(next)?;
                (store, next)
            }
            Some(generation) => (ViewStore::open(&self.dir(generation))?, generation),
            None => {
                let store = self.create(1)?;
                self.switch(1)?;
                (store, 1)
            }
        };
        self.write_durably(OPEN, boot.unwrap_or("unknown"))?;
        Ok(opened)
    }

    /// Marks the views closed; call after their last flush.
    pub fn close(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.root.join(OPEN)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::File::open(&self.root)?.sync_all()
    }

    /// Whether the views were left open by an earlier boot, so that [`Generations::open_current`] will
    /// replace them (a check reports it instead of opening them).
    pub fn left_open_by_an_earlier_boot(&self) -> std::io::Result<bool> {
        self.left_open_by_another_boot(boot_id().as_deref())
    }

    fn left_open_by_another_boot(&self, boot: Option<&str>) -> std::io::Result<bool> {
        match std::fs::read_to_string(self.root.join(OPEN)) {
            Ok(opened_in) => Ok(boot != Some(opened_in.trim())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates `generation` empty (removing leftovers of an interrupted rebuild) and stamps the view schema.
    pub fn create(&self, generation: u64) -> Result<ViewStore, StoreError> {
        let dir = self.dir(generation);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let store = ViewStore::open(&dir)?;
        store.stamp_schema()?;
        Ok(store)
    }

    /// Makes `generation` the one in use, atomically.
    pub fn switch(&self, generation: u64) -> std::io::Result<()> {
        self.write_durably("CURRENT", &generation.to_string())
    }

    /// Replaces the file `name` under the root with `text`, atomically and durably.
    fn write_durably(&self, name: &str, text: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.root.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{text}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.root.join(name))?;
        std::fs::File::open(&self.root)?.sync_all()
    }

    /// Removes every generation but `keep` (their stores should be closed).
    pub fn remove_others(&self, keep: u64) -> std::io::Result<()> {
        for entry in std::fs::read_dir(&self.root)? {
            let path = entry?.path();
            let is_other = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("gen-"))
                .is_some_and(|n| n != keep.to_string());
            if is_other {
                std::fs::remove_dir_all(&path)?;
            }
        }
        Ok(())
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_generations_is_atomic_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::new(dir.path().join("views"));
        let (first, n) = g.open_current().unwrap();
        assert_eq!(n, 1);
        assert!(first.schema_is_current().unwrap());
        drop(first);
        let second = g.create(2).unwrap();
        assert_eq!(g.current().unwrap(), Some(1), "creating a generation does not switch to it");
        g.switch(2).unwrap();
        drop(second);
        g.remove_others(2).unwrap();
        assert_eq!(g.current().unwrap(), Some(2));
        assert!(!dir.path().join("views/gen-1").exists());
        assert!(dir.path().join("views/gen-2").exists());
    }

    #[test]
    fn views_left_open_by_an_earlier_boot_are_replaced_by_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::new(dir.path().join("views"));
        let open = |boot| {
            let (store, generation) = g.open_current_in(boot).unwrap();
            (store.checkpoint().unwrap(), generation)
        };
        let (store, _) = g.open_current_in(Some("boot-a")).unwrap();
        store.commit(&crate::views::Changes::default(), 7).unwrap();
        drop(store);

        // The process died (no close) and started again in the same boot: the kernel kept every write.
        assert_eq!(open(Some("boot-a")), (7, 1));
        // Closed, then the machine restarted: the views were flushed before the close.
        g.close().unwrap();
        assert_eq!(open(Some("boot-b")), (7, 1));
        // Still open when the machine went down: not trusted, replaced by an empty generation.
        assert_eq!(open(Some("boot-c")), (0, 2));
        assert!(!dir.path().join("views/gen-1").exists());
        // Where the boot is unknown, views left open are never trusted; closed ones are.
        assert_eq!(open(None), (0, 3));
        g.close().unwrap();
        assert_eq!(open(None), (0, 3));
    }
}
