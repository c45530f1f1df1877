//! Building uploads: a tar of a function directory that extracts cleanly
//! under the rules of this crate, byte for byte the same for the same files.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tar::{EntryType, Header};

use crate::disk::{DIR_MODE, file_mode};

/// The modification time of every entry, so that packing the same files
/// twice gives the same bytes (the tar crate's own deterministic value).
const FIXED_MTIME: u64 = 1_153_704_088;

/// Builds an upload in memory.
pub struct Packer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Packer {
    fn default() -> Self {
        Self::new()
    }
}

impl Packer {
    pub fn new() -> Self {
        Self { builder: tar::Builder::new(Vec::new()) }
    }

    /// Adds a regular file. Its mode becomes 0o755 if `mode` has any
    /// executable bit, else 0o644.
    pub fn add_bytes(&mut self, archive_path: &str, data: &[u8], mode: u32) -> io::Result<()> {
        self.add_file(Path::new(archive_path), data, mode)
    }

    /// Adds the tree under `dir` recursively beneath `archive_prefix` (`""`
    /// for the archive root), in sorted order. File modes become 0o755 or
    /// 0o644 (by the executable bit), symlinks are kept as symlinks (not
    /// followed), and `.git` is left out.
    pub fn add_dir(&mut self, dir: &Path, archive_prefix: &str) -> io::Result<()> {
        self.add_tree(dir, Path::new(archive_prefix))
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        self.builder.into_inner()
    }

    fn add_tree(&mut self, dir: &Path, prefix: &Path) -> io::Result<()> {
        let mut children = fs::read_dir(dir)
            .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
            .map_err(|e| context(e, "read the directory", dir))?;
        children.sort_by_key(fs::DirEntry::file_name);
        for child in children {
            let name = child.file_name();
            if name == OsStr::new(".git") {
                continue;
            }
            let on_disk = child.path();
            let in_archive = prefix.join(&name);
            let meta = fs::symlink_metadata(&on_disk).map_err(|e| context(e, "read", &on_disk))?;
            let file_type = meta.file_type();
            if file_type.is_symlink() {
                let target = fs::read_link(&on_disk).map_err(|e| context(e, "read the symlink", &on_disk))?;
                self.add_symlink(&in_archive, &target)?;
            } else if file_type.is_dir() {
                self.add_directory(&in_archive)?;
                self.add_tree(&on_disk, &in_archive)?;
            } else if file_type.is_file() {
                let data = fs::read(&on_disk).map_err(|e| context(e, "read", &on_disk))?;
                self.add_file(&in_archive, &data, meta.permissions().mode())?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "cannot pack {}: it is not a regular file, directory or symlink; move it out of the directory",
                        on_disk.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn add_file(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let mut header = header(EntryType::Regular, file_mode(mode & 0o111 != 0));
        header.set_size(data.len() as u64);
        self.builder.append_data(&mut header, path, data)
    }

    fn add_directory(&mut self, path: &Path) -> io::Result<()> {
        self.builder.append_data(&mut header(EntryType::Directory, DIR_MODE), path, io::empty())
    }

    fn add_symlink(&mut self, path: &Path, target: &Path) -> io::Result<()> {
        self.builder.append_link(&mut header(EntryType::Symlink, 0o777), path, target)
    }
}

fn header(entry_type: EntryType, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_mtime(FIXED_MTIME);
    header.set_size(0);
    header
}

fn context(err: io::Error, action: &str, path: &Path) -> io::Error {
    io::Error::new(err.kind(), format!("cannot {action} {}: {err}", path.display()))
}
