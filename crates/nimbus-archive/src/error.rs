//! Why an upload cannot be read or extracted. Every message names the entry
//! at fault and says what the user should change.

use std::io;
use std::path::PathBuf;

/// Why an uploaded archive was refused. Entry paths are shown as written in
/// the archive, quoted and escaped, so a hostile name cannot forge output.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the upload is not a valid tar archive ({at}): {reason}; create it with `nimbus deploy` or `tar -cf`")]
    NotTar { at: String, reason: String },

    #[error(
        "the upload is an empty tar archive; it must hold nimbus.toml at its top level, next to the function's files"
    )]
    Empty,

    #[error(
        "archive entry {path:?} has an unsafe path: it {reason}; store every file under a relative path inside the upload"
    )]
    UnsafePath { path: String, reason: &'static str },

    #[error(
        "archive entry {path:?} is a symlink to {target:?}, which {reason}; only relative links that stay inside \
         the extracted directory are allowed: make the link relative or replace it with a copy of the file"
    )]
    UnsafeSymlink { path: String, target: String, reason: &'static str },

    #[error(
        "archive entry {path:?} is a hard link to {target:?}, which {reason}; a hard link may only point to a regular \
         file stored earlier in the same directory tree: replace it with a copy of the file"
    )]
    UnsafeHardLink { path: String, target: String, reason: &'static str },

    #[error(
        "archive entry {path:?} lies under {link:?}, which is a symlink; files are never written through links, \
         so store {link:?} as a real directory"
    )]
    ThroughSymlink { path: String, link: String },

    #[error("archive entry {path:?} {reason}; each path must be either a file or a directory: re-create the archive")]
    PathConflict { path: String, reason: String },

    #[error("archive entry {path:?} appears more than once; each path may be stored only once: re-create the archive")]
    Duplicate { path: String },

    #[error(
        "archive entry {path:?} is {kind}, which cannot be deployed; upload only regular files, directories \
         and links"
    )]
    UnsupportedType { path: String, kind: String },

    #[error(
        "archive entry {path:?} is past the limit of {max} entries per upload; leave dependency caches and \
         build output out of the upload"
    )]
    TooManyEntries { path: String, max: usize },

    #[error(
        "archive entry {path:?} brings the unpacked size past the limit of {max} bytes; leave large assets and \
         build caches out of the upload"
    )]
    TooLarge { path: String, max: u64 },

    #[error("archive entry {path:?} is {kind}, not a regular file; store it as a plain file")]
    NotRegularFile { path: String, kind: &'static str },

    #[error("nothing in the archive lies under {subdir:?}; check the code directory named in nimbus.toml")]
    SubdirMissing { subdir: String },

    #[error("the extraction destination {} already exists; extract into a new directory", dest.display())]
    DestinationExists { dest: PathBuf },

    #[error("cannot create the extraction destination {}: {source}", dest.display())]
    Destination {
        dest: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "cannot extract archive entry {path:?} to {}: {source}; check the free space and permissions on the node",
        disk.display()
    )]
    Write {
        path: String,
        disk: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ArchiveError {
    /// An entry whose data ends before the size its header declares.
    pub(crate) fn cut_short(path: &str, got: u64, size: u64) -> Self {
        ArchiveError::NotTar {
            at: format!("in entry {path:?}"),
            reason: format!("its data stops after {got} of {size} bytes"),
        }
    }
}
