//! Deploy-time work: validate that bytes are a wasi:http 0.2 component this
//! node can run, compile it once, and load precompiled artifacts from disk.

use std::path::Path;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::{GuestState, WasmRuntime};

/// A component ready to be instantiated for each request.
pub struct CompiledComponent {
    pub(crate) pre: ProxyPre<GuestState>,
    /// How long compiling (or loading) took.
    pub elapsed: Duration,
}

/// Why a component cannot be deployed. Each message says what to do instead.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("not a WebAssembly file (it does not start with the \\0asm magic bytes)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component: build for the wasm32-wasip2 target, or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error("the component imports {}, which nimbus does not provide: nimbus links WASI 0.2 (wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets, wasi:http at any 0.2.x version)", .0.join(", "))]
    UnsupportedImports(Vec<String>),
    #[error("the component cannot be linked: {0}")]
    Unlinkable(String),
    #[error(
        "the component does not export wasi:http/incoming-handler@0.2.x: build it as an HTTP handler (the wasi:http/proxy world)"
    )]
    NoHandlerExport,
    #[error("cannot load precompiled artifact {path}: {reason}")]
    Artifact { path: String, reason: String },
}

const WASI_PACKAGES: [&str; 7] = ["cli", "clocks", "filesystem", "io", "random", "sockets", "http"];

fn is_provided(import: &str) -> bool {
    let Some(rest) = import.strip_prefix("wasi:") else { return false };
    let (package, version) = match rest.split_once('@') {
        Some((p, v)) => (p, Some(v)),
        None => (rest, None),
    };
    let package = package.split('/').next().unwrap_or_default();
    WASI_PACKAGES.contains(&package) && version.is_none_or(|v| v.starts_with("0.2."))
}

fn format_error(e: &wasmtime::Error) -> String {
    format!("{e:#}").lines().next().unwrap_or_default().to_owned()
}

impl WasmRuntime {
    /// Validates and compiles `wasm`, returning the ready component and the
    /// artifact bytes to store for [`Self::load_precompiled`].
    pub fn compile(&self, wasm: &[u8]) -> Result<(CompiledComponent, Vec<u8>), CompileError> {
        if !wasm.starts_with(b"\0asm") || wasm.len() < 8 {
            return Err(CompileError::NotWasm);
        }
        // Core modules carry version 1 with layer 0; components a different layer.
        if wasm[4..8] == [1, 0, 0, 0] {
            return Err(CompileError::CoreModule);
        }
        let started = Instant::now();
        let component = Component::new(&self.engine, wasm).map_err(|e| CompileError::Invalid(format_error(&e)))?;
        let ready = self.prepare(component, started)?;
        let artifact =
            ready.pre.instance_pre().component().serialize().map_err(|e| CompileError::Invalid(format_error(&e)))?;
        Ok((ready, artifact))
    }

    /// Loads an artifact written from [`Self::compile`]'s output by this node.
    pub fn load_precompiled(&self, path: &Path) -> Result<CompiledComponent, CompileError> {
        let started = Instant::now();
        // SAFETY: wasmtime requires that the file be produced by `serialize`
        // of a compatible engine and not be modified while mapped. Artifacts
        // live in the node's own data directory, are written only by this code
        // from `compile`, named by content hash and engine compatibility key,
        // and replaced by rename, never in place; wasmtime also checks the
        // header and engine compatibility before use.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize_file(&self.engine, path) }
            .map_err(|e| CompileError::Artifact { path: path.display().to_string(), reason: format_error(&e) })?;
        self.prepare(component, started)
    }

    fn prepare(&self, component: Component, started: Instant) -> Result<CompiledComponent, CompileError> {
        let ty = component.component_type();
        let missing: Vec<String> =
            ty.imports(&self.engine).map(|(name, _)| name.to_owned()).filter(|n| !is_provided(n)).collect();
        if !missing.is_empty() {
            return Err(CompileError::UnsupportedImports(missing));
        }
        let instance_pre =
            self.linker.instantiate_pre(&component).map_err(|e| CompileError::Unlinkable(format_error(&e)))?;
        let pre = ProxyPre::new(instance_pre).map_err(|_| CompileError::NoHandlerExport)?;
        Ok(CompiledComponent { pre, elapsed: started.elapsed() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_02_imports_are_provided_at_any_patch_version() {
        assert!(is_provided("wasi:http/types@0.2.0"));
        assert!(is_provided("wasi:cli/environment@0.2.6"));
        assert!(is_provided("wasi:io/streams@0.2.9"));
        assert!(!is_provided("wasi:http/types@0.3.0"));
        assert!(!is_provided("wasi:keyvalue/store@0.2.0"));
        assert!(!is_provided("acme:db/query@1.0.0"));
    }
}
