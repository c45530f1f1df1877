//! `nimbus.toml`: the raw schema (unknown keys are errors), validation with
//! messages that name the file, the line and what to write instead, and the
//! resolution into a [`FunctionSpec`] with every default filled in.
//!
//! This crate reads text and returns data; it does not touch components,
//! storage or the network.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use nimbus_core::{
    AsyncConfig, Destination, FunctionName, FunctionSpec, HttpRoute, Limits, ProcessSpec, QueueBinding, RoutePattern,
    Runtime, ScheduleSpec,
};
use serde::Deserialize;
use toml::Spanned;

/// The file name `nimbus deploy DIR` looks for.
pub const MANIFEST_FILE: &str = "nimbus.toml";

/// One problem in a manifest, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    pub line: Option<usize>,
    pub message: String,
}

/// Every problem found in one manifest file. Displays one per line as
/// `nimbus.toml:7: memory_mb = 0: must be between 16 and 4096`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: String,
    pub problems: Vec<ManifestProblem>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{}:{}: {}", self.file, line, p.message)?,
                None => write!(f, "{}: {}", self.file, p.message)?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    runtime: Spanned<String>,
    component: Option<Spanned<String>>,
    code: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    handler: Option<Spanned<String>>,
    min_instances: Option<Spanned<i64>>,
    idle_timeout_s: Option<Spanned<i64>>,
    memory_mb: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    max_concurrency: Option<Spanned<i64>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
    #[serde(default)]
    http: Vec<Spanned<RawHttp>>,
    #[serde(rename = "async")]
    async_section: Option<RawAsync>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[serde(default)]
    queue: Vec<RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: Spanned<String>,
    batch_size: Option<Spanned<i64>>,
    max_concurrency: Option<Spanned<i64>>,
    visibility_timeout_s: Option<Spanned<i64>>,
    max_receive: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
    timezone: Option<Spanned<String>>,
    payload: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsync {
    max_retries: Option<Spanned<i64>>,
    max_event_age_s: Option<Spanned<i64>>,
    on_success: Option<Spanned<String>>,
    on_failure: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    route: Spanned<String>,
    methods: Option<Spanned<Vec<String>>>,
}

struct Checker<'a> {
    source: &'a str,
    problems: Vec<ManifestProblem>,
}

impl Checker<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.source.len());
        self.source[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn problem(&mut self, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| self.line_of(s));
        self.problems.push(ManifestProblem { line, message });
    }

    /// Checks an optional integer against `lo..=hi`; reports and falls back to
    /// `default` when it is outside.
    fn ranged<T: TryFrom<i64>>(
        &mut self,
        key: &str,
        value: &Option<Spanned<i64>>,
        (lo, hi): (i64, i64),
        default: T,
    ) -> T {
        let Some(v) = value else { return default };
        let n = *v.get_ref();
        match T::try_from(n) {
            Ok(t) if (lo..=hi).contains(&n) => t,
            _ => {
                self.problem(Some(v.span()), format!("{key} = {n}: must be between {lo} and {hi}"));
                default
            }
        }
    }
}

/// Parses and validates manifest text. `file` is how errors name the file.
pub fn parse(source: &str, file: &str) -> Result<FunctionSpec, ManifestError> {
    let mut checker = Checker { source, problems: Vec::new() };
    let raw: RawManifest = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            let message = e.message().trim().replace('\n', " ");
            let message = explain_parse_error(&message);
            checker.problem(e.span(), message);
            return Err(ManifestError { file: file.to_owned(), problems: checker.problems });
        }
    };
    let spec = resolve(raw, &mut checker);
    match spec {
        Some(spec) if checker.problems.is_empty() => Ok(spec),
        _ => Err(ManifestError { file: file.to_owned(), problems: checker.problems }),
    }
}

fn explain_parse_error(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove it or check its spelling")
    } else if message.starts_with("missing field `name`") {
        "missing `name = \"...\"`: every function needs a name".to_owned()
    } else if message.starts_with("missing field `runtime`") {
        "missing `runtime = \"wasm\"`".to_owned()
    } else {
        message.to_owned()
    }
}

/// A path inside the function's directory, or a problem reported.
fn relative_path(key: &str, value: &Spanned<String>, c: &mut Checker<'_>) -> Option<PathBuf> {
    let path = Path::new(value.get_ref());
    let escapes = path.components().any(|p| matches!(p, std::path::Component::ParentDir));
    if path.is_absolute() || escapes {
        c.problem(
            Some(value.span()),
            format!("{key} = {:?}: must be a path inside the function's directory", value.get_ref()),
        );
        return None;
    }
    Some(path.to_path_buf())
}

fn resolve_component(component: &Option<Spanned<String>>, c: &mut Checker<'_>) -> Option<Runtime> {
    match component {
        Some(path) if path.get_ref().trim().is_empty() => {
            c.problem(Some(path.span()), "component must name a .wasm file, e.g. component = \"hello.wasm\"".into());
            None
        }
        Some(path) => relative_path("component", path, c).map(|component| Runtime::Wasm { component }),
        None => {
            c.problem(None, "runtime = \"wasm\" needs `component = \"<file>.wasm\"`".into());
            None
        }
    }
}

fn resolve_process(raw: &RawManifest, c: &mut Checker<'_>) -> Option<ProcessSpec> {
    let code = match &raw.code {
        Some(code) if code.get_ref().trim().is_empty() => {
            c.problem(Some(code.span()), "code = \"\": name the code directory, e.g. code = \".\"".into());
            None
        }
        Some(code) => relative_path("code", code, c),
        None => Some(PathBuf::from(".")),
    };
    let command = match &raw.command {
        Some(cmd) if cmd.get_ref().is_empty() || cmd.get_ref()[0].trim().is_empty() => {
            c.problem(Some(cmd.span()), "command = []: name the program, e.g. command = [\"./bootstrap\"]".into());
            None
        }
        Some(cmd) if cmd.get_ref().iter().any(|a| a.contains('\0')) => {
            c.problem(Some(cmd.span()), "command: arguments must not contain NUL".into());
            None
        }
        Some(cmd) => Some(cmd.get_ref().clone()),
        None => Some(vec![ProcessSpec::DEFAULT_COMMAND.to_owned()]),
    };
    let handler = match &raw.handler {
        Some(h) if h.get_ref().trim().is_empty() || h.get_ref().contains('\0') => {
            c.problem(Some(h.span()), "handler must be a non-empty name, e.g. handler = \"app.handler\"".into());
            None
        }
        Some(h) => Some(h.get_ref().clone()),
        None => None,
    };
    let max = raw.max_concurrency.as_ref().map(|m| *m.get_ref()).unwrap_or(Limits::default().max_concurrency as i64);
    let min_instances =
        c.ranged("min_instances", &raw.min_instances, (0, i64::from(*Limits::MAX_CONCURRENCY_RANGE.end())), 0u32);
    if let Some(min) = raw.min_instances.as_ref().filter(|m| *m.get_ref() > max && *m.get_ref() >= 0) {
        c.problem(
            Some(min.span()),
            format!("min_instances = {}: must not exceed max_concurrency = {max}", min.get_ref()),
        );
    }
    let idle_timeout_s = c.ranged(
        "idle_timeout_s",
        &raw.idle_timeout_s,
        bounds(ProcessSpec::IDLE_TIMEOUT_S_RANGE),
        ProcessSpec::DEFAULT_IDLE_TIMEOUT_S,
    );
    if let Some(env) = &raw.env {
        for key in ProcessSpec::RESERVED_ENV {
            if env.get_ref().contains_key(key) {
                c.problem(Some(env.span()), format!("env {key}: set by nimbus for every instance; remove it"));
            }
        }
    }
    Some(ProcessSpec { code: code?, command: command?, handler, min_instances, idle_timeout_s })
}

fn bounds<T: Copy + Into<u64>>(range: std::ops::RangeInclusive<T>) -> (i64, i64) {
    let (lo, hi): (u64, u64) = ((*range.start()).into(), (*range.end()).into());
    (lo as i64, hi as i64)
}

fn resolve(raw: RawManifest, c: &mut Checker<'_>) -> Option<FunctionSpec> {
    let name = match FunctionName::parse(raw.name.get_ref()) {
        Ok(n) => Some(n),
        Err(e) => {
            c.problem(Some(raw.name.span()), format!("name: {e}"));
            None
        }
    };

    let process_keys = [
        ("code", raw.code.as_ref().map(|v| v.span())),
        ("command", raw.command.as_ref().map(|v| v.span())),
        ("handler", raw.handler.as_ref().map(|v| v.span())),
        ("min_instances", raw.min_instances.as_ref().map(|v| v.span())),
        ("idle_timeout_s", raw.idle_timeout_s.as_ref().map(|v| v.span())),
    ];
    let runtime = match raw.runtime.get_ref().as_str() {
        "wasm" => {
            for (key, span) in process_keys {
                if let Some(span) = span {
                    c.problem(Some(span), format!("{key} is for runtime = \"process\"; a wasm function has none"));
                }
            }
            resolve_component(&raw.component, c)
        }
        "process" => {
            if let Some(component) = &raw.component {
                c.problem(
                    Some(component.span()),
                    "component is for runtime = \"wasm\"; a process function names its `code` directory".into(),
                );
            }
            resolve_process(&raw, c).map(Runtime::Process)
        }
        other => {
            c.problem(
                Some(raw.runtime.span()),
                format!("runtime = {other:?}: unknown runtime; write runtime = \"wasm\" or runtime = \"process\""),
            );
            None
        }
    };

    let defaults = Limits::default();
    let limits = Limits {
        memory_mb: c.ranged("memory_mb", &raw.memory_mb, bounds(Limits::MEMORY_MB_RANGE), defaults.memory_mb),
        timeout_ms: c.ranged("timeout_ms", &raw.timeout_ms, bounds(Limits::TIMEOUT_MS_RANGE), defaults.timeout_ms),
        max_concurrency: c.ranged(
            "max_concurrency",
            &raw.max_concurrency,
            bounds(Limits::MAX_CONCURRENCY_RANGE),
            defaults.max_concurrency,
        ),
    };

    let env = raw.env.map(|env| {
        let span = env.span();
        let env = env.into_inner();
        for (k, v) in &env {
            let valid_key = !k.is_empty()
                && !k.starts_with(|ch: char| ch.is_ascii_digit())
                && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !valid_key {
                c.problem(
                    Some(span.clone()),
                    format!("env key {k:?}: use letters, digits and '_', not starting with a digit"),
                );
            }
            if v.contains('\0') {
                c.problem(Some(span.clone()), format!("env {k}: value must not contain NUL"));
            }
        }
        env
    });

    let mut routes: Vec<HttpRoute> = Vec::new();
    for http in raw.http {
        let http_span = http.span();
        let http = http.into_inner();
        let route = match RoutePattern::parse(http.route.get_ref()) {
            Ok(r) => r,
            Err(e) => {
                c.problem(Some(http.route.span()), e);
                continue;
            }
        };
        let methods = match http.methods {
            None => None,
            Some(ms) => {
                let span = ms.span();
                let ms: Vec<String> = ms.into_inner().iter().map(|m| m.to_ascii_uppercase()).collect();
                if ms.is_empty() {
                    c.problem(
                        Some(span.clone()),
                        "methods = []: list at least one method, or remove the key to accept any".into(),
                    );
                }
                for m in &ms {
                    if http::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                        c.problem(Some(span.clone()), format!("methods: {m:?} is not an HTTP method"));
                    }
                }
                Some(ms)
            }
        };
        if routes.iter().any(|r| r.route == route) {
            c.problem(Some(http_span), format!("route {route} is listed twice"));
            continue;
        }
        routes.push(HttpRoute { route, methods });
    }

    let async_config = raw.async_section.map(|a| resolve_async(a, c)).unwrap_or_default();
    let schedules = raw.schedule.into_iter().filter_map(|s| resolve_schedule(s, c)).collect();
    let mut queues: Vec<QueueBinding> = Vec::new();
    for q in raw.queue {
        let span = q.name.span();
        let Some(binding) = resolve_queue(q, c) else { continue };
        if queues.iter().any(|other| other.name == binding.name) {
            c.problem(Some(span), format!("queue {} is listed twice", binding.name));
            continue;
        }
        queues.push(binding);
    }
    Some(FunctionSpec {
        name: name?,
        runtime: runtime?,
        limits,
        env: env.unwrap_or_default(),
        routes,
        async_config,
        schedules,
        queues,
    })
}

fn resolve_queue(raw: RawQueue, c: &mut Checker<'_>) -> Option<QueueBinding> {
    let d = QueueBinding::DEFAULT;
    let binding = QueueBinding {
        name: raw.name.get_ref().clone(),
        batch_size: c.ranged("queue.batch_size", &raw.batch_size, bounds(QueueBinding::BATCH_SIZE_RANGE), d.batch_size),
        max_concurrency: c.ranged(
            "queue.max_concurrency",
            &raw.max_concurrency,
            bounds(QueueBinding::MAX_CONCURRENCY_RANGE),
            d.max_concurrency,
        ),
        visibility_timeout_s: c.ranged(
            "queue.visibility_timeout_s",
            &raw.visibility_timeout_s,
            bounds(QueueBinding::VISIBILITY_TIMEOUT_S_RANGE),
            d.visibility_timeout_s,
        ),
        max_receive: c.ranged(
            "queue.max_receive",
            &raw.max_receive,
            bounds(QueueBinding::MAX_RECEIVE_RANGE),
            d.max_receive,
        ),
    };
    if FunctionName::parse(&binding.name).is_err() {
        c.problem(
            Some(raw.name.span()),
            format!(
                "queue name {:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
                binding.name
            ),
        );
        return None;
    }
    Some(binding)
}

fn resolve_schedule(raw: RawSchedule, c: &mut Checker<'_>) -> Option<ScheduleSpec> {
    let timezone = raw.timezone.as_ref().map(|t| t.get_ref().clone()).unwrap_or_else(|| "UTC".to_owned());
    let span = match &raw.timezone {
        Some(t) if nimbus_cron::CronSchedule::parse("* * * * * *", t.get_ref()).is_err() => t.span(),
        _ => raw.cron.span(),
    };
    match nimbus_cron::CronSchedule::parse(raw.cron.get_ref(), &timezone) {
        Ok(_) => Some(ScheduleSpec { cron: raw.cron.into_inner(), timezone, payload: raw.payload }),
        Err(e) => {
            c.problem(Some(span), format!("schedule: {e}"));
            None
        }
    }
}

fn resolve_async(raw: RawAsync, c: &mut Checker<'_>) -> AsyncConfig {
    let defaults = AsyncConfig::default();
    let mut destination = |key: &str, value: Option<Spanned<String>>| {
        let value = value?;
        match Destination::parse(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                c.problem(Some(value.span()), format!("async.{key} = {e}"));
                None
            }
        }
    };
    let on_success = destination("on_success", raw.on_success);
    let on_failure = destination("on_failure", raw.on_failure);
    AsyncConfig {
        max_retries: c.ranged(
            "async.max_retries",
            &raw.max_retries,
            bounds(AsyncConfig::MAX_RETRIES_RANGE),
            defaults.max_retries,
        ),
        max_event_age_s: c.ranged(
            "async.max_event_age_s",
            &raw.max_event_age_s,
            bounds(AsyncConfig::MAX_EVENT_AGE_S_RANGE),
            defaults.max_event_age_s,
        ),
        on_success,
        on_failure,
    }
}

/// Resolves `nimbus deploy DIR_OR_MANIFEST` to the manifest path and the
/// function's directory (which relative paths in the manifest start from).
pub fn locate(dir_or_manifest: &Path) -> (PathBuf, PathBuf) {
    if dir_or_manifest.is_dir() {
        (dir_or_manifest.join(MANIFEST_FILE), dir_or_manifest.to_path_buf())
    } else {
        let dir = dir_or_manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        (dir_or_manifest.to_path_buf(), dir.to_path_buf())
    }
}

#[cfg(test)]
mod tests;
