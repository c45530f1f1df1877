//! Deploy uploads: plain (uncompressed) tar archives holding `nimbus.toml`
//! at the top level and the function's files. This crate reads one file out
//! of an upload, checks a whole upload, extracts all or part of one to disk,
//! and packs a directory into one. It knows nothing of manifests or runtimes.
//!
//! Threat model: an archive comes from whoever may deploy and is extracted
//! with the node's privileges. A hostile archive must not write or link
//! outside the destination (absolute paths, `..`, symlinks leading out, files
//! written through an earlier symlink, hard links to anything but an earlier
//! file), create devices, FIFOs, setuid or world-writable files, or exhaust
//! disk and memory (entry count and sizes are checked from the headers before
//! any data is read). Such entries are refused with an error, never skipped,
//! and a failed extraction leaves nothing behind. Out of scope: another
//! process changing the destination while it is written (it is a fresh,
//! private directory), and what the extracted code does once it runs.
//! Unix only: the node extracts on Linux.

mod disk;
mod error;
mod pack;
mod walk;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use error::ArchiveError;
pub use pack::Packer;

use walk::ItemKind;

/// Bounds on what one upload may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries of every kind (files, directories, links).
    pub max_entries: usize,
    /// The sum of all entry sizes declared in the headers.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_entries: 10_000, max_unpacked_bytes: 256 * 1024 * 1024 }
    }
}

/// What an archive (or the extracted part of it) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Regular files, hard links included.
    pub files: usize,
    /// Bytes of regular-file data.
    pub bytes: u64,
}

/// Reads one regular file out of the archive; `None` if it is absent. The
/// path is normalised (`./a/b` is `a/b`); a hard link is read through to the
/// file it names. The whole archive is checked on the way, as by [`check`].
pub fn read_file(archive: &[u8], path: &Path, limits: &Limits) -> Result<Option<Vec<u8>>, ArchiveError> {
    let wanted = checked_path(path)?;
    let mut data = None;
    let mut link_to: Option<PathBuf> = None;
    walk::walk(archive, limits, Path::new(""), |item, reader| {
        if item.path != wanted {
            return Ok(());
        }
        match &item.kind {
            ItemKind::File { size, .. } => data = Some(read_entry(reader, *size, &item.shown)?),
            ItemKind::HardLink { target } => link_to = Some(target.clone()),
            ItemKind::Dir => {
                return Err(ArchiveError::NotRegularFile { path: item.shown.clone(), kind: "a directory" });
            }
            ItemKind::Symlink { .. } => {
                return Err(ArchiveError::NotRegularFile { path: item.shown.clone(), kind: "a symlink" });
            }
        }
        Ok(())
    })?;
    match link_to {
        // The target is a regular file, never another link: one more pass at most.
        Some(target) => read_file(archive, &target, limits),
        None => Ok(data),
    }
}

/// Checks every entry of the archive (paths, types, links, totals) without
/// writing anything.
pub fn check(archive: &[u8], limits: &Limits) -> Result<Summary, ArchiveError> {
    walk::walk(archive, limits, Path::new(""), |_, _| Ok(()))
}

/// Extracts the entries under `subdir` (relative to the archive root; `""`
/// or `"."` for everything) into `dest`, with paths relative to `subdir`.
/// `dest` must not exist yet: this call creates it (and any missing parents)
/// and, on any error, removes it again. The whole archive is checked, not
/// only the part under `subdir`; links under `subdir` must stay inside it.
pub fn extract(archive: &[u8], subdir: &Path, dest: &Path, limits: &Limits) -> Result<Summary, ArchiveError> {
    let root = checked_path(subdir)?;
    disk::create_destination(dest)?;
    let mut writer = disk::DiskWriter::new(dest, limits);
    let result = walk::walk(archive, limits, &root, |item, reader| writer.write(item, reader));
    if result.is_err() {
        // Best effort: the destination is new, so nothing of the caller's is lost.
        let _ = std::fs::remove_dir_all(dest);
    }
    result
}

fn checked_path(path: &Path) -> Result<PathBuf, ArchiveError> {
    walk::normalise(path).map_err(|reason| ArchiveError::UnsafePath { path: path.display().to_string(), reason })
}

fn read_entry(reader: &mut dyn Read, size: u64, shown: &str) -> Result<Vec<u8>, ArchiveError> {
    // The header's size is within the limits but not yet checked against the
    // data, so it only caps the first allocation.
    let mut data = Vec::with_capacity(usize::try_from(size.min(1024 * 1024)).unwrap_or(0));
    let got = reader
        .read_to_end(&mut data)
        .map_err(|e| ArchiveError::NotTar { at: format!("in entry {shown:?}"), reason: e.to_string() })?;
    if got as u64 != size {
        return Err(ArchiveError::cut_short(shown, got as u64, size));
    }
    Ok(data)
}
