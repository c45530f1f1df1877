//! Deploy, restore, list and remove: the control plane's work on functions.

use std::sync::Arc;
use std::time::Instant;

use nimbus_core::{ErrorCode, FunctionName, PlatformError};
use nimbus_scheduler::{DeployedFunction, Scheduler};
use nimbus_store::{FunctionRecord, Store, format_rfc3339};
use nimbus_wasm::{CompileError, CompiledComponent};

use crate::archive::{ArchiveError, Upload};
use crate::types::{DeployResult, FunctionInfo};

/// Why a deploy was refused. Nothing changed on the node.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{0}")]
    Manifest(#[from] nimbus_manifest::ManifestError),
    #[error(transparent)]
    Component(#[from] CompileError),
    #[error(transparent)]
    RouteConflict(#[from] nimbus_scheduler::RouteConflict),
    #[error("storage failed: {0}")]
    Store(#[from] nimbus_store::StoreError),
    #[error("the deploy was interrupted: {0}")]
    Interrupted(String),
}

impl From<DeployError> for PlatformError {
    fn from(e: DeployError) -> Self {
        let code = match &e {
            DeployError::Archive(_) => ErrorCode::BadRequest,
            DeployError::Manifest(_) => ErrorCode::InvalidManifest,
            DeployError::Component(_) => ErrorCode::InvalidComponent,
            DeployError::RouteConflict(_) => ErrorCode::Conflict,
            DeployError::Store(_) | DeployError::Interrupted(_) => ErrorCode::Internal,
        };
        PlatformError::new(code, e.to_string())
    }
}

/// The node's function lifecycle, shared by the API and start-up.
pub struct FunctionService {
    store: Arc<Store>,
    scheduler: Arc<Scheduler>,
    /// One deploy at a time, so route checks and installs cannot interleave.
    deploy_lock: tokio::sync::Mutex<()>,
}

impl FunctionService {
    pub fn new(store: Arc<Store>, scheduler: Arc<Scheduler>) -> Arc<Self> {
        Arc::new(Self { store, scheduler, deploy_lock: tokio::sync::Mutex::new(()) })
    }

    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Deploys the function in a tar upload. All checks and the compile run
    /// before anything is stored or served.
    pub async fn deploy(&self, upload: bytes::Bytes) -> Result<DeployResult, DeployError> {
        let _serialised = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let scheduler = self.scheduler.clone();
        let (record, compile_ms, compiled, component) = tokio::task::spawn_blocking(move || {
            let upload = Upload::read(&upload)?;
            let manifest = String::from_utf8_lossy(upload.manifest()?).into_owned();
            let spec = nimbus_manifest::parse(&manifest, nimbus_manifest::MANIFEST_FILE)?;
            let wasm = upload.component(&spec)?;
            let probe =
                FunctionRecord { spec: spec.clone(), version: 0, component_sha256: String::new(), deployed_at_ms: 0 };
            scheduler.check_routes(&probe)?;

            let hash = nimbus_store::Artifacts::sha256(wasm);
            let key = scheduler.wasm().compatibility_key();
            let artifacts = store.artifacts();
            let started = Instant::now();
            // The same bytes compiled by the same engine need no second compile.
            let cached = artifacts.compiled_path(&hash, &key);
            let (component, compiled) = match cached.exists().then(|| scheduler.wasm().load_precompiled(&cached)) {
                Some(Ok(component)) => (component, false),
                _ => {
                    let (component, artifact) = scheduler.wasm().compile(wasm)?;
                    scheduler.metrics().observe_compile(component.elapsed);
                    artifacts.put_component(wasm)?;
                    artifacts.put_compiled(&hash, &key, &artifact)?;
                    (component, true)
                }
            };
            let compile_ms = started.elapsed().as_secs_f64() * 1000.0;
            let record = store.save_function(&spec, &hash)?;
            Ok::<_, DeployError>((record, compile_ms, compiled, component))
        })
        .await
        .map_err(|e| DeployError::Interrupted(e.to_string()))??;

        self.scheduler.install(record.clone(), component)?;
        tracing::info!(function = %record.spec.name, version = record.version, compile_ms, "deployed");
        let function =
            self.scheduler.table().get(&record.spec.name).map(|f| info(f)).ok_or_else(|| {
                DeployError::Interrupted("the function was removed while it was being deployed".into())
            })?;
        Ok(DeployResult { function, compile_ms, compiled })
    }

    /// Serves every stored function again after a restart, from precompiled
    /// artifacts (recompiling only those the engine cannot load). A function
    /// that fails to load is logged and skipped, never fatal.
    pub fn restore(&self) -> Result<usize, nimbus_store::StoreError> {
        let records = self.store.list_functions()?;
        let wasm = self.scheduler.wasm();
        let key = wasm.compatibility_key();
        let mut restored = 0;
        for record in records {
            let name = record.spec.name.clone();
            match self.load(&record, &key) {
                Ok(component) => match self.scheduler.install(record, component) {
                    Ok(()) => restored += 1,
                    Err(e) => tracing::error!(function = %name, "not restored: {e}"),
                },
                Err(e) => tracing::error!(function = %name, "not restored: {e}"),
            }
        }
        Ok(restored)
    }

    fn load(&self, record: &FunctionRecord, key: &str) -> Result<CompiledComponent, DeployError> {
        let artifacts = self.store.artifacts();
        let hash = &record.component_sha256;
        let path = artifacts.compiled_path(hash, key);
        let wasm = self.scheduler.wasm();
        if path.exists() {
            match wasm.load_precompiled(&path) {
                Ok(component) => {
                    self.scheduler.metrics().observe_artifact_load(component.elapsed);
                    return Ok(component);
                }
                Err(e) => tracing::warn!(function = %record.spec.name, "recompiling: {e}"),
            }
        }
        let bytes = artifacts.read_component(hash)?;
        let (component, artifact) = wasm.compile(&bytes)?;
        self.scheduler.metrics().observe_compile(component.elapsed);
        artifacts.put_compiled(hash, key, &artifact)?;
        Ok(component)
    }

    /// Stops serving and forgets a function; `false` if there was none.
    pub async fn remove(&self, name: &FunctionName) -> Result<bool, nimbus_store::StoreError> {
        let _serialised = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let stored_name = name.clone();
        let stored =
            tokio::task::spawn_blocking(move || store.remove_function(&stored_name)).await.unwrap_or(Ok(false))?;
        let live = self.scheduler.remove(name);
        Ok(stored || live)
    }

    pub fn list(&self) -> Vec<FunctionInfo> {
        let table = self.scheduler.table();
        let mut functions: Vec<FunctionInfo> = table.functions().map(|f| info(f)).collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        functions
    }
}

pub(crate) fn info(f: &DeployedFunction) -> FunctionInfo {
    let r = &f.record;
    FunctionInfo {
        name: r.spec.name.to_string(),
        runtime: r.spec.runtime.kind().to_owned(),
        routes: r
            .spec
            .routes
            .iter()
            .map(|route| match &route.methods {
                Some(m) => format!("{} {}", m.join(","), route.route),
                None => route.route.to_string(),
            })
            .collect(),
        version: r.version,
        deployed_at: format_rfc3339(r.deployed_at_ms),
        deployed_at_ms: r.deployed_at_ms,
        component_sha256: r.component_sha256.clone(),
        limits: r.spec.limits,
        in_flight: f.in_flight(),
        next_run: r.spec.schedules.iter().filter_map(nimbus_events::next_fire_ms).min().map(format_rfc3339),
    }
}
