//! Generations of the views: `<root>/gen-<n>` directories and a `CURRENT` file naming the one in use.
//!
//! A rebuild fills the next generation beside the current one and switches by rewriting `CURRENT`
//! atomically (write, fsync, rename), so a crash at any point leaves either the old or the new views in use,
//! never a mix.

use crate::store::{StoreError, ViewStore};
use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Opens the generation in use, creating generation 1 if there is none.
    pub fn open_current(&self) -> Result<(ViewStore, u64), StoreError> {
        match self.current()? {
            Some(generation) => Ok((ViewStore::open(&self.dir(generation))?, generation)),
            None => {
                let store = self.create(1)?;
                self.switch(1)?;
                Ok((store, 1))
            }
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
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.root.join("CURRENT.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{generation}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.root.join("CURRENT"))?;
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
}
