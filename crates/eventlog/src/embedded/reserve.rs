//! The free space the embedded log leaves on its file system for what was already acknowledged.
//!
//! The log, the views that fold it, the seal journal and the audit records share one data directory. If
//! commands could fill the disk to the last byte, the write that meets the full disk could as well be the
//! views' flush of commits already acknowledged: sled then refuses every later write of the views, and
//! since sled restructures its tree during reads too, queries start failing. So the log refuses commands
//! (as a full disk, 507) while less than the reserve is free, and the rest of the service records what it
//! acknowledged in that room. Audit records are not refused: they seal commits already acknowledged.

use crate::{AppendError, DiskRefusal};
use std::path::{Path, PathBuf};

/// The reserve is this fraction (1/N) of the file system's size…
const SHARE: u64 = 50;
/// …but at least this many bytes…
const MIN: u64 = 1 << 20;
/// …and at most this many.
const MAX: u64 = 256 << 20;

/// The reserve on a file system of `total` bytes.
fn bytes_for(total: u64) -> u64 {
    (total / SHARE).clamp(MIN, MAX)
}

/// The reserve of one log directory's file system.
pub(super) struct Reserve {
    dir: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// The reserve for `dir`'s file system; none if its size cannot be read.
    pub(super) fn of(dir: &Path) -> Reserve {
        Reserve { dir: dir.to_owned(), bytes: fs2::total_space(dir).map_or(0, bytes_for) }
    }

    /// The refusal of new commands, while less than the reserve is free. (A failed reading refuses nothing:
    /// a disk that is really full fails the write itself.)
    pub(super) fn refusal(&self) -> Option<AppendError> {
        let free = fs2::available_space(&self.dir).ok()?;
        (free < self.bytes).then(|| AppendError::Disk {
            refusal: DiskRefusal::Full,
            reason: format!(
                "{free} bytes free on the file system of {}, under the {} bytes kept for the views and the audit trail",
                self.dir.display(),
                self.bytes
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_while_less_than_the_reserve_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let free = fs2::available_space(dir.path()).unwrap();
        let below = Reserve { dir: dir.path().to_owned(), bytes: free / 2 };
        assert!(below.refusal().is_none());
        let above = Reserve { dir: dir.path().to_owned(), bytes: free.saturating_mul(2).max(1) };
        let refusal = above.refusal().expect("refused");
        assert!(matches!(refusal, AppendError::Disk { refusal: DiskRefusal::Full, .. }), "{refusal:?}");
    }

    #[test]
    fn the_reserve_is_a_fiftieth_of_the_disk_from_1_mib_to_256_mib() {
        const MIB: u64 = 1 << 20;
        assert_eq!(bytes_for(6 * MIB), MIB, "a small disk keeps 1 MiB");
        assert_eq!(bytes_for(1000 * MIB), 20 * MIB);
        assert_eq!(bytes_for(100 << 30), 256 * MIB, "a large disk keeps at most 256 MiB");
        let dir = tempfile::tempdir().unwrap();
        let total = fs2::total_space(dir.path()).unwrap();
        assert_eq!(Reserve::of(dir.path()).bytes, bytes_for(total));
    }
}
