//! One pass over an archive's entries. Every entry is checked (count, type,
//! path, declared size, place in the tree, link target) from its header,
//! before any of its data is read; the entries under the chosen root are then
//! handed on as plain [`Item`]s with paths relative to that root.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::{ArchiveError, Limits, Summary};

/// Longer paths cannot be created on Linux anyway (`PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;
/// Bounds the work of tracking every directory of a path.
const MAX_PATH_DEPTH: usize = 128;

/// A checked entry under the walk's root.
pub(crate) struct Item {
    /// Relative to the root, normalised, never empty.
    pub path: PathBuf,
    /// The path as written in the archive, for messages.
    pub shown: String,
    pub kind: ItemKind,
}

pub(crate) enum ItemKind {
    File {
        size: u64,
        executable: bool,
    },
    Dir,
    /// A relative target that stays inside the root.
    Symlink {
        target: PathBuf,
    },
    /// The regular file a hard link finally names (never another link),
    /// stored earlier, relative to the root.
    HardLink {
        target: PathBuf,
    },
}

/// What an archive path has been used for so far.
enum Seen {
    /// `explicit` is false for directories only implied by deeper entries.
    Dir {
        explicit: bool,
    },
    File,
    /// A hard link, with the regular file it finally names.
    HardLink(PathBuf),
    Symlink,
}

/// Walks the whole archive, checking every entry, and calls `visit` with each
/// entry under `root` (normalised; empty for the whole archive) and its data.
pub(crate) fn walk(
    archive: &[u8],
    limits: &Limits,
    root: &Path,
    mut visit: impl FnMut(&Item, &mut dyn Read) -> Result<(), ArchiveError>,
) -> Result<Summary, ArchiveError> {
    let mut walker = Walker::new(limits, root);
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|e| walker.not_tar(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| walker.not_tar(&e))?;
        if let Some(item) = walker.admit(&entry)? {
            visit(&item, &mut entry)?;
        }
    }
    walker.finish()
}

/// Normalises an archive path: `./a//b/` becomes `a/b`. Absolute paths and
/// `..` are refused, not skipped. The error completes "the path ...".
pub(crate) fn normalise(path: &Path) -> Result<PathBuf, &'static str> {
    check_raw(path)?;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains a '..' component"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    if out.components().count() > MAX_PATH_DEPTH {
        return Err("is nested more than 128 directories deep");
    }
    Ok(out)
}

fn check_raw(path: &Path) -> Result<(), &'static str> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() > MAX_PATH_BYTES {
        return Err("is longer than 4096 bytes");
    }
    if bytes.contains(&0) {
        return Err("contains a NUL byte");
    }
    Ok(())
}

/// Checks a symlink target against the link's own place (`link`, relative to
/// the root): it must be relative, may climb with `..` only at its start, and
/// never above the root. With every link so checked, and no entry written
/// through a link, no chain of links leads out of the root: a `..` after a
/// name could climb out of wherever an inner link leads, so it is refused.
fn check_symlink_target(link: &Path, target: &Path) -> Result<PathBuf, &'static str> {
    check_raw(target)?;
    let depth = link.components().count().saturating_sub(1);
    let mut climbs = 0;
    let mut descended = false;
    let mut out = PathBuf::new();
    for component in target.components() {
        match component {
            Component::Normal(part) => {
                descended = true;
                out.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir if descended => return Err("has '..' after a directory name (write it without)"),
            Component::ParentDir => {
                climbs += 1;
                if climbs > depth {
                    return Err("climbs above the extracted directory");
                }
                out.push("..");
            }
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Ok(out)
}

/// What an entry's header says it is, before its place is checked.
enum Declared {
    File { executable: bool },
    Dir,
    Symlink(PathBuf),
    HardLink(PathBuf),
}

struct Walker<'a> {
    limits: &'a Limits,
    root: &'a Path,
    seen: HashMap<PathBuf, Seen>,
    entries: usize,
    declared_bytes: u64,
    /// The last entry looked at, to say where a corrupt archive went wrong.
    last: Option<String>,
    any_content: bool,
    root_found: bool,
    summary: Summary,
}

impl<'a> Walker<'a> {
    fn new(limits: &'a Limits, root: &'a Path) -> Self {
        Self {
            limits,
            root,
            seen: HashMap::new(),
            entries: 0,
            declared_bytes: 0,
            last: None,
            any_content: false,
            root_found: root.as_os_str().is_empty(),
            summary: Summary::default(),
        }
    }

    fn not_tar(&self, err: &io::Error) -> ArchiveError {
        let at = match &self.last {
            Some(path) => format!("after entry {path:?}"),
            None => "at its start".to_owned(),
        };
        // The reason may quote header bytes: keep control characters off the user's terminal.
        let reason = err.to_string().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        ArchiveError::NotTar { at, reason }
    }

    /// Checks one entry from its header; returns it as an item if it lies
    /// under the root and has something to extract.
    fn admit(&mut self, entry: &tar::Entry<'_, &[u8]>) -> Result<Option<Item>, ArchiveError> {
        let raw_path = entry.path_bytes();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        self.last = Some(shown.clone());

        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ArchiveError::TooManyEntries { path: shown, max: self.limits.max_entries });
        }
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() {
            // Archive-wide metadata (git archive writes the commit id here).
            return Ok(None);
        }
        self.any_content = true;

        let declared = self.declared_kind(entry, entry_type, raw_path.ends_with(b"/"), &shown)?;
        let path = normalise(Path::new(OsStr::from_bytes(&raw_path)))
            .map_err(|reason| ArchiveError::UnsafePath { path: shown.clone(), reason })?;
        if path.as_os_str().is_empty() {
            return match declared {
                Declared::Dir => Ok(None), // "./", the archive root itself
                _ => Err(ArchiveError::UnsafePath { path: shown, reason: "is empty" }),
            };
        }

        let size = entry.size();
        self.declared_bytes = self.declared_bytes.saturating_add(size);
        if self.declared_bytes > self.limits.max_unpacked_bytes {
            return Err(ArchiveError::TooLarge { path: shown, max: self.limits.max_unpacked_bytes });
        }

        self.admit_parents(&path, &shown)?;
        let under_root = path.strip_prefix(self.root).ok().map(Path::to_path_buf);
        let (kind, seen) = match declared {
            Declared::File { executable } => (ItemKind::File { size, executable }, Seen::File),
            Declared::Dir => (ItemKind::Dir, Seen::Dir { explicit: true }),
            Declared::Symlink(target) => {
                let place = under_root.as_deref().unwrap_or(&path);
                let target = check_symlink_target(place, &target).map_err(|reason| ArchiveError::UnsafeSymlink {
                    path: shown.clone(),
                    target: target.display().to_string(),
                    reason,
                })?;
                (ItemKind::Symlink { target }, Seen::Symlink)
            }
            Declared::HardLink(target) => {
                let (original, target) = self.hard_link_target(&target, under_root.is_some(), &shown)?;
                (ItemKind::HardLink { target }, Seen::HardLink(original))
            }
        };
        self.admit_self(path, seen, &shown)?;

        let Some(path) = under_root else { return Ok(None) };
        self.root_found = true;
        if path.as_os_str().is_empty() {
            // The entry for the root directory itself: the destination.
            return match kind {
                ItemKind::Dir => Ok(None),
                _ => Err(ArchiveError::PathConflict {
                    path: shown,
                    reason: "is the directory to extract, but it is not a directory".to_owned(),
                }),
            };
        }
        match kind {
            ItemKind::File { size, .. } => {
                self.summary.files += 1;
                self.summary.bytes += size;
            }
            ItemKind::HardLink { .. } => self.summary.files += 1,
            ItemKind::Dir | ItemKind::Symlink { .. } => {}
        }
        Ok(Some(Item { path, shown, kind }))
    }

    /// Reads the entry type (and, for links, the target) from the header.
    fn declared_kind(
        &self,
        entry: &tar::Entry<'_, &[u8]>,
        entry_type: EntryType,
        ends_with_slash: bool,
        shown: &str,
    ) -> Result<Declared, ArchiveError> {
        let link_target = || entry.link_name_bytes().map(|bytes| PathBuf::from(OsStr::from_bytes(&bytes)));
        Ok(match entry_type {
            // Old tar writers mark directories with a trailing slash only.
            EntryType::Regular if ends_with_slash => Declared::Dir,
            EntryType::Regular => {
                let mode = entry.header().mode().map_err(|e| self.not_tar(&e))?;
                Declared::File { executable: mode & 0o111 != 0 }
            }
            EntryType::Directory => Declared::Dir,
            EntryType::Symlink => Declared::Symlink(link_target().ok_or_else(|| ArchiveError::UnsafeSymlink {
                path: shown.to_owned(),
                target: String::new(),
                reason: "is empty",
            })?),
            EntryType::Link => Declared::HardLink(link_target().ok_or_else(|| ArchiveError::UnsafeHardLink {
                path: shown.to_owned(),
                target: String::new(),
                reason: "is empty",
            })?),
            other => return Err(ArchiveError::UnsupportedType { path: shown.to_owned(), kind: describe(other) }),
        })
    }

    /// Checks the directories above `path`: none may be a file or a symlink
    /// (nothing is ever written through a link). Unseen ones become implied.
    fn admit_parents(&mut self, path: &Path, shown: &str) -> Result<(), ArchiveError> {
        let mut implied = Vec::new();
        for parent in path.ancestors().skip(1).filter(|p| !p.as_os_str().is_empty()) {
            match self.seen.get(parent) {
                // Its own parents were checked when it was first seen.
                Some(Seen::Dir { .. }) => break,
                Some(Seen::Symlink) => {
                    return Err(ArchiveError::ThroughSymlink {
                        path: shown.to_owned(),
                        link: parent.display().to_string(),
                    });
                }
                Some(Seen::File | Seen::HardLink(_)) => {
                    return Err(ArchiveError::PathConflict {
                        path: shown.to_owned(),
                        reason: format!(
                            "lies under {:?}, which is a file in the archive",
                            parent.display().to_string()
                        ),
                    });
                }
                None => implied.push(parent.to_path_buf()),
            }
        }
        for dir in implied {
            self.seen.insert(dir, Seen::Dir { explicit: false });
        }
        Ok(())
    }

    /// Records `path` itself: each path once, except that a directory
    /// implied by earlier entries may still get its own entry.
    fn admit_self(&mut self, path: PathBuf, now: Seen, shown: &str) -> Result<(), ArchiveError> {
        match (self.seen.get(&path), &now) {
            (None, _) | (Some(Seen::Dir { explicit: false }), Seen::Dir { .. }) => {
                self.seen.insert(path, now);
                Ok(())
            }
            (Some(Seen::Dir { explicit: false }), _) => Err(ArchiveError::PathConflict {
                path: shown.to_owned(),
                reason: "is not a directory, but earlier entries lie under it".to_owned(),
            }),
            (Some(_), _) => Err(ArchiveError::Duplicate { path: shown.to_owned() }),
        }
    }

    /// A hard link must name a regular file (or a hard link to one) stored
    /// earlier, and one under the root when the link itself is extracted.
    /// Returns the regular file it finally names, both as an archive path and
    /// relative to the root, so that chains of links are never followed later.
    fn hard_link_target(
        &self,
        target: &Path,
        extracted: bool,
        shown: &str,
    ) -> Result<(PathBuf, PathBuf), ArchiveError> {
        let refuse = |reason| ArchiveError::UnsafeHardLink {
            path: shown.to_owned(),
            target: target.display().to_string(),
            reason,
        };
        let normalised = normalise(target).map_err(refuse)?;
        let original = match self.seen.get(&normalised) {
            Some(Seen::File) => normalised,
            Some(Seen::HardLink(original)) => original.clone(),
            _ => return Err(refuse("is not a regular file stored earlier in the archive")),
        };
        if !extracted {
            return Ok((original.clone(), original));
        }
        match original.strip_prefix(self.root) {
            Ok(relative) => Ok((original.clone(), relative.to_path_buf())),
            Err(_) => Err(refuse("lies outside the extracted directory")),
        }
    }

    fn finish(self) -> Result<Summary, ArchiveError> {
        if !self.any_content {
            return Err(ArchiveError::Empty);
        }
        if !self.root_found {
            return Err(ArchiveError::SubdirMissing { subdir: self.root.display().to_string() });
        }
        Ok(self.summary)
    }
}

fn describe(entry_type: EntryType) -> String {
    let name = match entry_type {
        EntryType::Char => "a character device",
        EntryType::Block => "a block device",
        EntryType::Fifo => "a FIFO (named pipe)",
        EntryType::Continuous => "a contiguous file",
        EntryType::GNUSparse => "a GNU sparse file",
        EntryType::GNULongName | EntryType::GNULongLink => "a GNU long-name header without its entry",
        EntryType::XHeader => "a pax header without its entry",
        other => return format!("an entry of unknown type {:?}", char::from(other.as_byte())),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_drops_dots_and_refuses_escapes() {
        assert_eq!(normalise(Path::new("./a//b/")).unwrap(), Path::new("a/b"));
        assert_eq!(normalise(Path::new(".")).unwrap(), Path::new(""));
        assert_eq!(normalise(Path::new("a/../b")), Err("contains a '..' component"));
        assert_eq!(normalise(Path::new("/etc/passwd")), Err("is absolute"));
        assert_eq!(normalise(Path::new(&"a/".repeat(129))), Err("is nested more than 128 directories deep"));
    }

    #[test]
    fn symlink_targets_are_resolved_against_the_links_own_directory() {
        let ok = |link: &str, target: &str| check_symlink_target(Path::new(link), Path::new(target));
        assert_eq!(ok("a/b/link", "../../f").unwrap(), Path::new("../../f"));
        assert_eq!(ok("a/link", "./b/./f").unwrap(), Path::new("b/f"));
        assert_eq!(ok("link", ".").unwrap(), Path::new("."));
        assert_eq!(ok("a/b/link", "../../../f"), Err("climbs above the extracted directory"));
        assert_eq!(ok("link", "../f"), Err("climbs above the extracted directory"));
        assert_eq!(ok("a/link", "b/../../f"), Err("has '..' after a directory name (write it without)"));
        assert_eq!(ok("a/link", "/etc/passwd"), Err("is absolute"));
    }
}
