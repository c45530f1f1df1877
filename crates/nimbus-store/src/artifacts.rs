use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Result, StoreError};

/// Component files named by the SHA-256 of their bytes, and their
/// precompiled forms named by hash and engine compatibility key.
pub struct Artifacts {
    components: PathBuf,
    compiled: PathBuf,
}

impl Artifacts {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let components = dir.join("components");
        let compiled = dir.join("compiled");
        for d in [&components, &compiled] {
            std::fs::create_dir_all(d).map_err(StoreError::io(format!("cannot create {}", d.display())))?;
        }
        Ok(Self { components, compiled })
    }

    pub fn sha256(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Stores a component (once per content) and returns its hash.
    pub fn put_component(&self, bytes: &[u8]) -> Result<String> {
        let hash = Self::sha256(bytes);
        let path = self.component_path(&hash);
        if !path.exists() {
            write_atomically(&path, bytes)?;
        }
        Ok(hash)
    }

    pub fn component_path(&self, hash: &str) -> PathBuf {
        self.components.join(format!("{hash}.wasm"))
    }

    pub fn compiled_path(&self, hash: &str, engine_key: &str) -> PathBuf {
        self.compiled.join(format!("{hash}-{engine_key}.cwasm"))
    }

    pub fn put_compiled(&self, hash: &str, engine_key: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.compiled_path(hash, engine_key);
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    pub fn read_component(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.component_path(hash);
        std::fs::read(&path).map_err(StoreError::io(format!("cannot read {}", path.display())))
    }
}

/// Writes to a temporary file, syncs it, and renames it into place, so a
/// reader never sees a partial file and a crash never leaves one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let ctx = || format!("cannot write {}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(StoreError::io(ctx()))?;
    f.write_all(bytes).map_err(StoreError::io(ctx()))?;
    f.sync_all().map_err(StoreError::io(ctx()))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(StoreError::io(ctx()))?;
    Ok(())
}
