//! The deploy upload: a tar archive holding `nimbus.toml` at its top level
//! and the files it names: the component of a Wasm function, or the whole
//! code directory of a process function. Reading and extracting are
//! `nimbus-archive`'s job (it refuses hostile archives); this module knows
//! which files a manifest needs.

use std::path::Path;

use nimbus_archive::{ArchiveError, Limits, Packer};
use nimbus_core::{FunctionSpec, Runtime};

/// What one upload may hold; the upload itself is bounded by the API's
/// `max_deploy_bytes`.
pub const LIMITS: Limits = Limits { max_entries: 10_000, max_unpacked_bytes: 256 * 1024 * 1024 };

/// Why an upload cannot be deployed, beyond the archive itself.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("the archive has no nimbus.toml at its top level")]
    NoManifest,
    #[error("the manifest names {0}, which is not in the upload (build it first?)")]
    MissingFile(String),
}

/// The manifest's text.
pub fn manifest(upload: &[u8]) -> Result<String, UploadError> {
    let bytes = nimbus_archive::read_file(upload, Path::new(nimbus_manifest::MANIFEST_FILE), &LIMITS)?
        .ok_or(UploadError::NoManifest)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The bytes of the file at `path`, named by the manifest.
pub fn file(upload: &[u8], path: &Path) -> Result<Vec<u8>, UploadError> {
    nimbus_archive::read_file(upload, path, &LIMITS)?
        .ok_or_else(|| UploadError::MissingFile(path.display().to_string()))
}

/// Packs a function directory for upload: the manifest (as `nimbus.toml`,
/// whatever its file name) and what it names: the component, or the code
/// directory with its executables and symlinks kept.
pub fn pack_function(
    manifest_text: &str,
    spec: &FunctionSpec,
    manifest_path: &Path,
    dir: &Path,
) -> std::io::Result<Vec<u8>> {
    let mut packer = Packer::new();
    match &spec.runtime {
        Runtime::Wasm { component } => {
            packer.add_bytes(nimbus_manifest::MANIFEST_FILE, manifest_text.as_bytes(), 0o644)?;
            let bytes = std::fs::read(dir.join(component)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot read the component {}: {e}", dir.join(component).display()),
                )
            })?;
            packer.add_bytes(&component.to_string_lossy(), &bytes, 0o644)?;
        }
        Runtime::Process(process) => {
            let code = dir.join(&process.code);
            if !code.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the code directory {} does not exist", code.display()),
                ));
            }
            let prefix = process
                .code
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect::<std::path::PathBuf>();
            let prefix = prefix.to_string_lossy().into_owned();
            // With `code = "."` the manifest is already part of the code.
            let manifest_in_code = prefix.is_empty() && code.join(nimbus_manifest::MANIFEST_FILE).exists();
            if manifest_in_code {
                let same = std::fs::canonicalize(code.join(nimbus_manifest::MANIFEST_FILE)).ok()
                    == std::fs::canonicalize(manifest_path).ok();
                if !same {
                    return Err(std::io::Error::other(format!(
                        "{} holds its own nimbus.toml besides the manifest {}; deploy that directory, or rename one",
                        code.display(),
                        manifest_path.display()
                    )));
                }
            } else {
                packer.add_bytes(nimbus_manifest::MANIFEST_FILE, manifest_text.as_bytes(), 0o644)?;
            }
            packer.add_dir(&code, &prefix)?;
        }
    }
    packer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_and_process_functions_pack_what_their_manifest_names() {
        let dir = std::env::temp_dir().join(format!("nimbus-archive-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("code/lib")).unwrap();
        std::fs::write(dir.join("f.wasm"), b"\0asm-bytes").unwrap();
        let text = "name = \"f\"\nruntime = \"wasm\"\ncomponent = \"./f.wasm\"\n";
        let spec = nimbus_manifest::parse(text, "nimbus.toml").unwrap();
        let bytes = pack_function(text, &spec, &dir.join("nimbus.toml"), &dir).unwrap();
        assert_eq!(manifest(&bytes).unwrap(), text);
        assert_eq!(file(&bytes, Path::new("./f.wasm")).unwrap(), b"\0asm-bytes");
        assert!(matches!(file(&bytes, Path::new("other.wasm")), Err(UploadError::MissingFile(_))));

        std::fs::write(dir.join("code/bootstrap"), b"#!/bin/sh\n").unwrap();
        std::fs::write(dir.join("code/lib/x.py"), b"x = 1\n").unwrap();
        let text = "name = \"p\"\nruntime = \"process\"\ncode = \"code\"\n";
        let spec = nimbus_manifest::parse(text, "nimbus.toml").unwrap();
        let bytes = pack_function(text, &spec, &dir.join("nimbus.toml"), &dir).unwrap();
        assert_eq!(manifest(&bytes).unwrap(), text);
        assert_eq!(file(&bytes, Path::new("code/lib/x.py")).unwrap(), b"x = 1\n");

        // code = "." with the manifest inside it: packed once.
        std::fs::write(dir.join("code/nimbus.toml"), "name = \"q\"\nruntime = \"process\"\n").unwrap();
        let text = std::fs::read_to_string(dir.join("code/nimbus.toml")).unwrap();
        let spec = nimbus_manifest::parse(&text, "nimbus.toml").unwrap();
        let bytes = pack_function(&text, &spec, &dir.join("code/nimbus.toml"), &dir.join("code")).unwrap();
        assert_eq!(manifest(&bytes).unwrap(), text);
        assert_eq!(nimbus_archive::check(&bytes, &LIMITS).unwrap().files, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
