//! The HTTP surface of the control plane.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use nimbus_core::{ErrorCode, FunctionName, Invocation, PlatformError, REQUEST_ID_HEADER};
use nimbus_store::{LogQuery, format_rfc3339};
use serde::Deserialize;

use crate::types::{DURATION_HEADER, FunctionList, LogEntry, LogPage};
use crate::{FunctionService, async_routes};
use nimbus_events::AsyncInvoker;
use nimbus_scheduler::DeployedFunction;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Required as `Authorization: Bearer <token>` on `/v1` when set.
    pub token: Option<String>,
    /// Largest invoke payload (the same limit as the gateway's).
    pub max_body_bytes: usize,
    /// Largest deploy upload.
    pub max_deploy_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self { token: None, max_body_bytes: 6 * 1024 * 1024, max_deploy_bytes: 256 * 1024 * 1024 }
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) functions: Arc<FunctionService>,
    pub(crate) invoker: Option<Arc<AsyncInvoker>>,
    pub(crate) config: Arc<ApiConfig>,
}

/// The whole control-plane router. Without an `invoker`, asynchronous
/// invocations answer `unavailable`.
pub fn router(functions: Arc<FunctionService>, invoker: Option<Arc<AsyncInvoker>>, config: ApiConfig) -> Router {
    let api = Api { functions, invoker, config: Arc::new(config) };
    let v1 = Router::new()
        .route("/v1/functions", get(list))
        .route("/v1/functions/{name}", get(show).delete(remove))
        .route("/v1/functions/{name}/invoke", post(invoke))
        .route("/v1/functions/{name}/invocations", post(async_routes::submit).get(async_routes::list))
        .route("/v1/invocations/{id}", get(async_routes::get_invocation))
        .route("/v1/functions/{name}/dlq", get(async_routes::list_dead))
        .route("/v1/functions/{name}/dlq/redrive", post(async_routes::redrive))
        .route("/v1/functions/{name}/dlq/purge", post(async_routes::purge))
        .route("/v1/functions/{name}/logs", get(logs))
        .route("/v1/queues", get(async_routes::list_queues))
        .route("/v1/queues/{queue}/messages", post(async_routes::send_message))
        .route("/v1/queues/{queue}/dlq", get(async_routes::queue_dead))
        .route("/v1/queues/{queue}/dlq/redrive", post(async_routes::queue_redrive))
        .route("/v1/deploy", post(deploy))
        .route("/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    let lambda = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(crate::lambda_api::invoke))
        .route_layer(middleware::from_fn_with_state(api.clone(), crate::lambda_api::require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(v1)
        .merge(lambda)
        .fallback(|| async {
            ApiError(PlatformError::new(ErrorCode::NotFound, "no such API endpoint; see /v1/openapi.json"))
        })
        .layer(DefaultBodyLimit::disable())
        .with_state(api)
}

/// A platform error as an API response.
pub(crate) struct ApiError(pub(crate) PlatformError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.to_response(None).map(Body::from)
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        Self(e)
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(PlatformError::new(ErrorCode::Internal, e.to_string()))
}

async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    if let Some(token) = &api.config.token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
            let mut response = ApiError(PlatformError::new(
                ErrorCode::Unauthorized,
                "this node requires a token: send Authorization: Bearer <token> (nimbus --token or NIMBUS_TOKEN)",
            ))
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn parse_name(name: &str) -> Result<FunctionName, ApiError> {
    FunctionName::parse(name).map_err(|e| ApiError(PlatformError::new(ErrorCode::BadRequest, e.to_string())))
}

/// The deployed function a path names, or the error to answer.
pub(crate) fn deployed(api: &Api, name: &str) -> Result<(FunctionName, Arc<DeployedFunction>), ApiError> {
    let name = parse_name(name)?;
    let function = api.functions.scheduler().table().get(&name).cloned().ok_or_else(|| not_deployed(&name))?;
    Ok((name, function))
}

pub(crate) fn not_deployed(name: &FunctionName) -> ApiError {
    ApiError(PlatformError::new(ErrorCode::NotFound, format!("function {name} is not deployed")))
}

/// Reads a body up to `limit` bytes; a declared or actual excess is 413.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError(PlatformError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than the limit of {limit} bytes"),
        ))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError(PlatformError::new(ErrorCode::BadRequest, format!("could not read the body: {e}")))),
    }
}

async fn list(State(api): State<Api>) -> axum::Json<FunctionList> {
    axum::Json(FunctionList { functions: api.functions.list() })
}

async fn show(State(api): State<Api>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, function) = deployed(&api, &name)?;
    Ok(axum::Json(crate::functions::info(&function)).into_response())
}

async fn remove(State(api): State<Api>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let name = parse_name(&name)?;
    if api.functions.remove(&name).await.map_err(internal)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_deployed(&name))
    }
}

async fn deploy(State(api): State<Api>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let upload = read_body(&headers, body, api.config.max_deploy_bytes).await?;
    let result = api.functions.deploy(upload).await.map_err(|e| ApiError(e.into()))?;
    Ok((StatusCode::CREATED, axum::Json(result)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct InvokeQuery {
    method: Option<String>,
    path: Option<String>,
}

/// Headers of the API call that must not reach the guest.
fn is_control_header(name: &header::HeaderName) -> bool {
    name == header::AUTHORIZATION
        || name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == crate::types::IDEMPOTENCY_KEY_HEADER
        || name.as_str().starts_with("x-nimbus-")
}

async fn invoke(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (name, function) = deployed(&api, &name)?;
    let payload = read_body(&headers, body, api.config.max_body_bytes).await?;

    let (method, path, forwarded) = call_target(&query, &headers, &function.record.spec)?;
    let mut request = http::Request::builder()
        .method(method)
        .uri(&path)
        .body(payload)
        .map_err(|e| ApiError(PlatformError::new(ErrorCode::BadRequest, format!("path={path}: {e}"))))?;
    *request.headers_mut() = forwarded;
    request.headers_mut().insert(header::HOST, HeaderValue::from_static("localhost"));

    let outcome = api.functions.scheduler().invoke(function, Invocation::new(name, request)).await.buffered().await;
    let request_id = outcome.request_id;
    let mut response = match outcome.result {
        Ok(response) => response.map(|body| Body::from(Bytes::copy_from_slice(body.as_bytes()))),
        Err(e) => e.to_response(Some(&request_id)).map(Body::from),
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id.as_str()) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", outcome.duration.as_secs_f64() * 1000.0)) {
        h.insert(DURATION_HEADER, v);
    }
    Ok(response)
}

/// The method, path and headers a function sees when called through the
/// API: from `?method=` (default POST), `?path=` (default its first route)
/// and the call's own headers, less the control plane's.
pub(crate) fn call_target(
    query: &InvokeQuery,
    headers: &HeaderMap,
    spec: &nimbus_core::FunctionSpec,
) -> Result<(http::Method, String, HeaderMap), ApiError> {
    let method = query.method.as_deref().unwrap_or("POST").to_ascii_uppercase();
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
        ApiError(PlatformError::new(ErrorCode::BadRequest, format!("method={method}: not an HTTP method")))
    })?;
    let path = query.path.clone().unwrap_or_else(|| spec.default_path());
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(ApiError(PlatformError::new(
            ErrorCode::BadRequest,
            format!("path={path}: must be a path starting with '/'"),
        )));
    }
    let mut forwarded = HeaderMap::new();
    for (k, v) in headers.iter().filter(|(k, _)| !is_control_header(k)) {
        forwarded.append(k.clone(), v.clone());
    }
    Ok((method, path, forwarded))
}

#[derive(Deserialize)]
struct LogsQuery {
    limit: Option<u32>,
    after: Option<i64>,
    wait_ms: Option<u64>,
}

const MAX_LOG_LIMIT: u32 = 1000;
const MAX_LOG_WAIT: Duration = Duration::from_secs(30);

async fn logs(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let name = parse_name(&name)?;
    let log = api.functions.scheduler().log().clone();
    let query = LogQuery {
        function: name.to_string(),
        after_seq: q.after,
        limit: q.limit.unwrap_or(20).clamp(1, MAX_LOG_LIMIT),
    };
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_LOG_WAIT);
    let mut changes = log.subscribe();
    let run_query = |log: Arc<nimbus_store::InvocationLog>, query: LogQuery| async move {
        tokio::task::spawn_blocking(move || {
            log.flush();
            log.query(&query)
        })
        .await
        .map_err(internal)?
        .map_err(internal)
    };
    let mut records = run_query(log.clone(), query.clone()).await?;
    if records.is_empty() && q.after.is_some() && !wait.is_zero() {
        let deadline = tokio::time::Instant::now() + wait;
        while records.is_empty() {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => records = run_query(log.clone(), query.clone()).await?,
                _ => break,
            }
        }
    }
    if records.is_empty() && q.after.is_none() && api.functions.scheduler().table().get(&name).is_none() {
        return Err(not_deployed(&name));
    }
    let last_seq = records.last().map(|r| r.seq).or(q.after).unwrap_or(0);
    let entries = records
        .into_iter()
        .map(|r| LogEntry {
            seq: r.seq,
            time: format_rfc3339(r.started_at_ms),
            request_id: r.request_id,
            status: r.status,
            outcome: r.outcome,
            duration_ms: r.duration_us as f64 / 1000.0,
            output: r.output,
            cold: r.init_us.is_some(),
            init_ms: r.init_us.map(|us| us as f64 / 1000.0),
        })
        .collect();
    Ok(axum::Json(LogPage { entries, last_seq }).into_response())
}

async fn metrics(State(api): State<Api>) -> Response {
    let scheduler = api.functions.scheduler();
    let mut text = scheduler.metrics().render(scheduler.table().len());
    text.push_str(
        "# HELP nimbus_log_records_dropped_total Invocation records dropped because the log writer fell behind.\n",
    );
    text.push_str("# TYPE nimbus_log_records_dropped_total counter\n");
    text.push_str(&format!("nimbus_log_records_dropped_total {}\n", scheduler.log().dropped()));
    if let Some(invoker) = &api.invoker {
        let queue = invoker.queue().clone();
        if let Ok(Ok((stats, depths))) = tokio::task::spawn_blocking(move || {
            Ok::<_, nimbus_store::StoreError>((queue.stats()?, queue.queue_depths()?))
        })
        .await
        {
            text.push_str(&crate::async_metrics(&stats, &invoker.retries()));
            let mut depths = depths;
            for f in scheduler.table().functions() {
                for q in &f.record.spec.queues {
                    if !depths.iter().any(|d| d.queue == q.name) {
                        depths.push(nimbus_store::QueueDepth { queue: q.name.clone(), ..Default::default() });
                    }
                }
            }
            depths.sort_by(|a, b| a.queue.cmp(&b.queue));
            text.push_str(&crate::queue_metrics(&depths));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document()).into_response()
}
