//! The free-space guard of a SQLite store: writes are refused while the filesystem that holds the
//! database file has less than `--min-free-disk` available, so the disk never fills under the
//! database and an operator has room to act.

use std::path::{Path, PathBuf};

use super::StoreError;

/// Refuses writes below a minimum of free space on one filesystem.
#[derive(Debug, Clone)]
pub(super) struct DiskGuard {
    /// The directory of the database file: the WAL and the journal live there too.
    dir: PathBuf,
    /// Bytes that must stay available.
    min_free: u64,
}

impl DiskGuard {
    /// A guard for the database file `file`, or `None` when `min_free` is 0 or the free space of
    /// its filesystem cannot be measured (an in-memory database, say).
    pub(super) fn new(file: &Path, min_free: u64) -> Option<DiskGuard> {
        if min_free == 0 {
            return None;
        }
        let dir = match file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        match fs4::available_space(&dir) {
            Ok(_) => Some(DiskGuard { dir, min_free }),
            Err(err) => {
                tracing::warn!(path = %file.display(), error = %err, "cannot measure free disk space; --min-free-disk is off");
                None
            }
        }
    }

    /// `Err(LowDiskSpace)` while less than the minimum is available.
    ///
    /// Measured on every call, which is once per commit: `statvfs` costs about a microsecond,
    /// nothing next to the commit's fsync, and a fresh figure means writes resume the moment
    /// space returns.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match fs4::available_space(&self.dir) {
            Ok(free) if free < self.min_free => Err(StoreError::LowDiskSpace {
                free,
                min: self.min_free,
            }),
            Ok(_) => Ok(()),
            Err(err) => {
                // Cannot tell: let the database itself report a full disk.
                tracing::warn!(path = %self.dir.display(), error = %err, "cannot measure free disk space");
                Ok(())
            }
        }
    }
}
