//! Deploy, restore, list and remove: the control plane's work on functions.

use std::sync::Arc;
use std::time::Instant;

use nimbus_core::{ErrorCode, FunctionName, PlatformError};
use std::path::{Path, PathBuf};

use nimbus_core::{FunctionSpec, ProcessSpec, Runtime};
use nimbus_process::{FunctionContext, ProcessFunction};
use nimbus_scheduler::{DeployedFunction, FunctionCode, Scheduler};
use nimbus_store::{FunctionRecord, Store, format_rfc3339};
use nimbus_wasm::{CompileError, CompiledComponent};

use crate::archive::{self, UploadError};
use crate::types::{DeployResult, FunctionInfo};

/// Why a deploy was refused. Nothing changed on the node.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Archive(#[from] nimbus_archive::ArchiveError),
    #[error("{0}")]
    Code(String),
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
            DeployError::Upload(_) | DeployError::Archive(_) | DeployError::Code(_) => ErrorCode::BadRequest,
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

    /// Deploys the function in a tar upload. All checks (and the compile,
    /// or the extraction of a code directory) run before anything is stored
    /// or served.
    pub async fn deploy(&self, upload: bytes::Bytes) -> Result<DeployResult, DeployError> {
        let _serialised = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let scheduler = self.scheduler.clone();
        let (record, compile_ms, compiled, loaded) = tokio::task::spawn_blocking(move || {
            let manifest = archive::manifest(&upload)?;
            let spec = nimbus_manifest::parse(&manifest, nimbus_manifest::MANIFEST_FILE)?;
            let probe =
                FunctionRecord { spec: spec.clone(), version: 0, component_sha256: String::new(), deployed_at_ms: 0 };
            scheduler.check_routes(&probe)?;
            let started = Instant::now();
            let (hash, compiled, loaded) = match &spec.runtime {
                Runtime::Wasm { component } => {
                    let wasm = archive::file(&upload, component)?;
                    let hash = nimbus_store::Artifacts::sha256(&wasm);
                    let key = scheduler.wasm().compatibility_key();
                    let artifacts = store.artifacts();
                    // The same bytes compiled by the same engine need no second compile.
                    let cached = artifacts.compiled_path(&hash, &key);
                    let (component, compiled) =
                        match cached.exists().then(|| scheduler.wasm().load_precompiled(&cached)) {
                            Some(Ok(component)) => (component, false),
                            _ => {
                                let (component, artifact) = scheduler.wasm().compile(&wasm)?;
                                scheduler.metrics().observe_compile(component.elapsed);
                                artifacts.put_component(&wasm)?;
                                artifacts.put_compiled(&hash, &key, &artifact)?;
                                (component, true)
                            }
                        };
                    (hash, compiled, Loaded::Wasm(component))
                }
                Runtime::Process(process) => {
                    nimbus_archive::check(&upload, &archive::LIMITS)?;
                    let hash = nimbus_store::Artifacts::sha256(&upload);
                    let dir = code_dir(&store, &spec, &hash);
                    if !dir.exists() {
                        let staging = dir.with_extension("extracting");
                        let _ = std::fs::remove_dir_all(&staging);
                        nimbus_archive::extract(&upload, &process.code, &staging, &archive::LIMITS)?;
                        check_command(process, &staging).inspect_err(|_| {
                            let _ = std::fs::remove_dir_all(&staging);
                        })?;
                        std::fs::rename(&staging, &dir)
                            .map_err(|e| DeployError::Code(format!("cannot store the code directory: {e}")))?;
                    }
                    (hash, true, Loaded::Process(dir, process.clone()))
                }
            };
            let compile_ms = started.elapsed().as_secs_f64() * 1000.0;
            let record = store.save_function(&spec, &hash)?;
            Ok::<_, DeployError>((record, compile_ms, compiled, loaded))
        })
        .await
        .map_err(|e| DeployError::Interrupted(e.to_string()))??;

        let code = self.code(&record, loaded);
        self.scheduler.install(record.clone(), code)?;
        self.remove_old_code(&record);
        tracing::info!(function = %record.spec.name, version = record.version, compile_ms, "deployed");
        let function =
            self.scheduler.table().get(&record.spec.name).map(|f| info(f)).ok_or_else(|| {
                DeployError::Interrupted("the function was removed while it was being deployed".into())
            })?;
        Ok(DeployResult { function, compile_ms, compiled })
    }

    /// What the scheduler runs for `record`: the compiled component, or a
    /// new instance pool over the extracted code.
    fn code(&self, record: &FunctionRecord, loaded: Loaded) -> FunctionCode {
        match loaded {
            Loaded::Wasm(component) => FunctionCode::Wasm(component),
            Loaded::Process(code_dir, process) => {
                let ctx = FunctionContext {
                    runtime: self.scheduler.process().clone(),
                    name: record.spec.name.to_string(),
                    version: record.version,
                    command: process.command.clone(),
                    handler: process.handler.clone(),
                    code_dir,
                    memory_mb: record.spec.limits.memory_mb,
                    env: record.spec.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                };
                let idle = std::time::Duration::from_secs(process.idle_timeout_s);
                FunctionCode::Process(ProcessFunction::start(ctx, process.min_instances, idle))
            }
        }
    }

    /// Keeps the code directories of the current and the previous version
    /// (instances of the previous one may still be finishing); removes older ones.
    fn remove_old_code(&self, record: &FunctionRecord) {
        let Runtime::Process(_) = &record.spec.runtime else { return };
        let parent = self.store.dir().join("code").join(record.spec.name.as_str());
        let Ok(entries) = std::fs::read_dir(&parent) else { return };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy() != record.component_sha256)
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        dirs.sort();
        dirs.pop();
        for (_, dir) in dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Serves every stored function again after a restart, from precompiled
    /// artifacts (recompiling only those the engine cannot load) and stored
    /// code directories. A function that fails to load is logged and
    /// skipped, never fatal.
    pub fn restore(&self) -> Result<usize, nimbus_store::StoreError> {
        let records = self.store.list_functions()?;
        let key = self.scheduler.wasm().compatibility_key();
        let mut restored = 0;
        for record in records {
            let name = record.spec.name.clone();
            let loaded = match &record.spec.runtime {
                Runtime::Wasm { .. } => self.load(&record, &key).map(Loaded::Wasm),
                Runtime::Process(process) => {
                    let dir = code_dir(&self.store, &record.spec, &record.component_sha256);
                    if dir.is_dir() {
                        Ok(Loaded::Process(dir, process.clone()))
                    } else {
                        Err(DeployError::Code(format!("its code directory {} is missing", dir.display())))
                    }
                }
            };
            match loaded {
                Ok(loaded) => {
                    let code = self.code(&record, loaded);
                    match self.scheduler.install(record, code) {
                        Ok(()) => restored += 1,
                        Err(e) => tracing::error!(function = %name, "not restored: {e}"),
                    }
                }
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
        let _ = std::fs::remove_dir_all(self.store.dir().join("code").join(name.as_str()));
        Ok(stored || live)
    }

    pub fn list(&self) -> Vec<FunctionInfo> {
        let table = self.scheduler.table();
        let mut functions: Vec<FunctionInfo> = table.functions().map(|f| info(f)).collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        functions
    }
}

/// Code a deploy has prepared, before it is installed.
enum Loaded {
    Wasm(CompiledComponent),
    Process(PathBuf, ProcessSpec),
}

/// Where the extracted code of a process function's upload lives.
fn code_dir(store: &Store, spec: &FunctionSpec, hash: &str) -> PathBuf {
    store.dir().join("code").join(spec.name.as_str()).join(hash)
}

/// A command naming a file in the code (`./bootstrap`) must be there and
/// executable; other commands are looked up on the node when instances start.
fn check_command(process: &ProcessSpec, code: &Path) -> Result<(), DeployError> {
    use std::os::unix::fs::PermissionsExt;
    let program = &process.command[0];
    if !program.contains('/') || Path::new(program).is_absolute() {
        return Ok(());
    }
    let path = code.join(program);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(m) if m.is_file() => Err(DeployError::Code(format!(
            "command {program:?} is in the uploaded code but not executable; chmod +x it and deploy again"
        ))),
        _ => Err(DeployError::Code(format!(
            "command {program:?} is not in the uploaded code directory {:?}; build it, or set `command` in the manifest",
            process.code.display().to_string()
        ))),
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
        instances: f
            .process()
            .map(|p| crate::types::Instances { alive: p.instances() as u64, idle: p.idle_instances() as u64 }),
    }
}
