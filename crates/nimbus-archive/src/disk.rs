//! Writes checked items under a fresh destination directory. Nothing is ever
//! written through a link: directories are made one level at a time after
//! checking with `symlink_metadata` that nothing else is in their place, and
//! files are opened with `O_CREAT | O_EXCL | O_NOFOLLOW` (either flag alone
//! refuses a symlink in the last path component).

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::walk::{Item, ItemKind};
use crate::{ArchiveError, Limits};

pub(crate) const DIR_MODE: u32 = 0o755;

/// The only two file modes the platform writes: no setuid, setgid or sticky
/// bits, and no write access for others, whatever the archive said.
pub(crate) fn file_mode(executable: bool) -> u32 {
    if executable { 0o755 } else { 0o644 }
}

/// Creates `dest` (and any missing parents); it must not exist yet.
pub(crate) fn create_destination(dest: &Path) -> Result<(), ArchiveError> {
    let fail = |source| ArchiveError::Destination { dest: dest.to_path_buf(), source };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(ArchiveError::DestinationExists { dest: dest.to_path_buf() });
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(fail)?;
    }
    match fs::create_dir(dest) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(ArchiveError::DestinationExists { dest: dest.to_path_buf() })
        }
        Err(e) => Err(fail(e)),
        Ok(()) => fs::set_permissions(dest, Permissions::from_mode(DIR_MODE)).map_err(fail),
    }
}

/// Writes items under `dest`, counting the bytes it really writes.
pub(crate) struct DiskWriter<'a> {
    dest: &'a Path,
    limits: &'a Limits,
    written: u64,
}

impl<'a> DiskWriter<'a> {
    pub(crate) fn new(dest: &'a Path, limits: &'a Limits) -> Self {
        Self { dest, limits, written: 0 }
    }

    pub(crate) fn write(&mut self, item: &Item, data: &mut dyn Read) -> Result<(), ArchiveError> {
        let disk = self.dest.join(&item.path);
        let fail = |source| ArchiveError::Write { path: item.shown.clone(), disk: disk.clone(), source };
        self.create_parents(&item.path).map_err(fail)?;
        match &item.kind {
            ItemKind::File { size, executable } => {
                let copied = write_file(&disk, data, *size, *executable).map_err(fail)?;
                if copied != *size {
                    return Err(ArchiveError::cut_short(&item.shown, copied, *size));
                }
                self.written += copied;
                if self.written > self.limits.max_unpacked_bytes {
                    return Err(ArchiveError::TooLarge {
                        path: item.shown.clone(),
                        max: self.limits.max_unpacked_bytes,
                    });
                }
                Ok(())
            }
            ItemKind::Dir => ensure_dir(&disk).map_err(fail),
            ItemKind::Symlink { target } => std::os::unix::fs::symlink(target, &disk).map_err(fail),
            // linkat(2) without AT_SYMLINK_FOLLOW: links the earlier file itself.
            ItemKind::HardLink { target } => fs::hard_link(self.dest.join(target), &disk).map_err(fail),
        }
    }

    /// Makes the directories above `path` one level at a time.
    fn create_parents(&self, path: &Path) -> io::Result<()> {
        let mut parents: Vec<&Path> = path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()).collect();
        parents.reverse();
        for parent in parents {
            ensure_dir(&self.dest.join(parent))?;
        }
        Ok(())
    }
}

/// Makes `path` a directory unless it already is one; refuses anything else
/// in its place, symlinks above all.
fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "something other than a directory is already there; refusing to write through it",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(path)?;
            fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        }
        Err(e) => Err(e),
    }
}

/// Writes at most `size` bytes into a new file; returns how many it wrote.
fn write_file(path: &Path, data: &mut dyn Read, size: u64, executable: bool) -> io::Result<u64> {
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let copied = io::copy(&mut data.take(size), &mut file)?;
    file.set_permissions(Permissions::from_mode(file_mode(executable)))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_never_created_through_a_symlink() {
        let dir = std::env::temp_dir().join(format!("nimbus-archive-nofollow-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("target", dir.join("link")).unwrap();
        let err = write_file(&dir.join("link"), &mut &b"x"[..], 1, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.join("target").exists());
        let err = ensure_dir(&dir.join("link")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        fs::remove_dir_all(&dir).unwrap();
    }
}
