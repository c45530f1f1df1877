//! The deploy upload: a tar archive holding `nimbus.toml` and the files it
//! names. Read in memory, bounded, with paths normalised and checked.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use nimbus_core::{FunctionSpec, Runtime};

/// Why an uploaded archive cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the upload is not a valid tar archive: {0}")]
    NotTar(String),
    #[error("the archive has no nimbus.toml at its top level")]
    NoManifest,
    #[error("the archive entry {0:?} has an unsafe path (absolute, or with '..')")]
    UnsafePath(String),
    #[error("the archive holds more than {0} files")]
    TooManyFiles(usize),
    #[error("cannot read {path} from the archive: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the manifest names {0}, which is not in the upload (build it first?)")]
    MissingFile(String),
}

const MAX_FILES: usize = 10_000;

/// The files of an upload, by normalised relative path.
pub struct Upload {
    files: HashMap<PathBuf, Vec<u8>>,
}

fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

impl Upload {
    pub fn read(bytes: &[u8]) -> Result<Self, ArchiveError> {
        let mut archive = tar::Archive::new(bytes);
        let mut files = HashMap::new();
        let entries = archive.entries().map_err(|e| ArchiveError::NotTar(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ArchiveError::NotTar(e.to_string()))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let raw = entry.path().map_err(|e| ArchiveError::NotTar(e.to_string()))?.into_owned();
            let path = normalise(&raw).ok_or_else(|| ArchiveError::UnsafePath(raw.display().to_string()))?;
            if files.len() >= MAX_FILES {
                return Err(ArchiveError::TooManyFiles(MAX_FILES));
            }
            let mut data = Vec::with_capacity(entry.size().min(64 * 1024 * 1024) as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| ArchiveError::Unreadable { path: path.display().to_string(), reason: e.to_string() })?;
            files.insert(path, data);
        }
        if files.is_empty() {
            return Err(ArchiveError::NotTar(
                "it holds no files; upload a tar of nimbus.toml and the component".into(),
            ));
        }
        Ok(Self { files })
    }

    pub fn manifest(&self) -> Result<&[u8], ArchiveError> {
        self.files.get(Path::new(nimbus_manifest::MANIFEST_FILE)).map(Vec::as_slice).ok_or(ArchiveError::NoManifest)
    }

    pub fn component(&self, spec: &FunctionSpec) -> Result<&[u8], ArchiveError> {
        let Runtime::Wasm { component } = &spec.runtime;
        let path = normalise(component).ok_or_else(|| ArchiveError::UnsafePath(component.display().to_string()))?;
        self.files
            .get(&path)
            .map(Vec::as_slice)
            .ok_or_else(|| ArchiveError::MissingFile(component.display().to_string()))
    }
}

/// Packs a function directory for upload: the manifest (as `nimbus.toml`,
/// whatever its file name) and the component it names.
pub fn pack_function(manifest_text: &str, spec: &FunctionSpec, dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    append(&mut builder, nimbus_manifest::MANIFEST_FILE, manifest_text.as_bytes())?;
    let Runtime::Wasm { component } = &spec.runtime;
    let bytes = std::fs::read(dir.join(component)).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot read the component {}: {e}", dir.join(component).display()))
    })?;
    append(&mut builder, &component.to_string_lossy(), &bytes)?;
    builder.into_inner()
}

fn append(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_read_round_trips_and_rejects_escapes() {
        let dir = std::env::temp_dir().join(format!("nimbus-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.wasm"), b"\0asm-bytes").unwrap();
        let text = "name = \"f\"\nruntime = \"wasm\"\ncomponent = \"./f.wasm\"\n";
        let spec = nimbus_manifest::parse(text, "nimbus.toml").unwrap();
        let bytes = pack_function(text, &spec, &dir).unwrap();
        let upload = Upload::read(&bytes).unwrap();
        assert_eq!(upload.manifest().unwrap(), text.as_bytes());
        assert_eq!(upload.component(&spec).unwrap(), b"\0asm-bytes");
        assert!(matches!(Upload::read(b"definitely not a tar archive"), Err(ArchiveError::NotTar(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
