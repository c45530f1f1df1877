//! Control API for asynchronous invocations and dead-letter queues.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::{ErrorCode, PlatformError};
use nimbus_events::AsyncInvoker;
use nimbus_store::{AsyncQueue, AsyncRecord, StoredRequest, format_rfc3339};
use serde::Deserialize;

use crate::routes::{Api, ApiError, InvokeQuery, call_target, deployed, internal, parse_name, read_body};
use crate::types::{
    AsyncAccepted, AttemptView, DeadLetterCount, DeadLetterSelection, DeadLetters, DeadMessage, DeadMessages,
    IDEMPOTENCY_KEY_HEADER, InvocationList, InvocationView, QueueInfo, QueueList, QueueSent,
};

fn invoker(api: &Api) -> Result<&Arc<AsyncInvoker>, ApiError> {
    api.invoker
        .as_ref()
        .ok_or_else(|| ApiError(PlatformError::new(ErrorCode::Unavailable, "asynchronous invocations are off")))
}

/// Runs a query on the durable queue off the async runtime.
async fn on_queue<T: Send + 'static>(
    api: &Api,
    query: impl FnOnce(&AsyncQueue) -> Result<T, nimbus_store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let queue = invoker(api)?.queue().clone();
    tokio::task::spawn_blocking(move || query(&queue)).await.map_err(internal)?.map_err(internal)
}

pub(crate) fn view(r: AsyncRecord) -> InvocationView {
    InvocationView {
        id: r.id,
        function: r.function,
        status: r.status.as_str().to_owned(),
        created_at: format_rfc3339(r.created_at_ms),
        next_attempt_at: matches!(r.status, nimbus_store::AsyncStatus::Queued | nimbus_store::AsyncStatus::Failed)
            .then(|| format_rfc3339(r.next_attempt_at_ms)),
        finished_at: r.finished_at_ms.map(format_rfc3339),
        attempts: r
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                request_id: a.request_id,
                started_at: format_rfc3339(a.started_at_ms),
                duration_ms: a.duration_ms,
                status: a.status,
                outcome: a.outcome,
                error: a.error,
            })
            .collect(),
        method: r.request.method,
        path: r.request.path,
        payload: String::from_utf8_lossy(&r.request.body).into_owned(),
        result_status: r.result_status,
        result: r.result_body.map(|b| String::from_utf8_lossy(&b).into_owned()),
        error: r.last_error,
    }
}

/// `POST /v1/functions/{name}/invocations`: 202 once the invocation is on disk.
pub(crate) async fn submit(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(query): Query<InvokeQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let invoker = invoker(&api)?;
    let (name, function) = deployed(&api, &name)?;
    let payload = read_body(&headers, body, api.config.max_body_bytes).await?;
    let (method, path, forwarded) = call_target(&query, &headers, &function.record.spec)?;
    let key = headers.get(IDEMPOTENCY_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 256) {
        return Err(ApiError(PlatformError::new(ErrorCode::BadRequest, "Idempotency-Key must be 1 to 256 characters")));
    }
    let request = StoredRequest {
        method: method.to_string(),
        path,
        headers: forwarded
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
            .collect(),
        body: payload.to_vec(),
    };
    let accepted = invoker.submit(&name, request, key).await.map_err(internal)?;
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(AsyncAccepted { id: accepted.id.clone(), duplicate: accepted.duplicate }))
            .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/invocations/{}", accepted.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub(crate) async fn get_invocation(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let lookup = id.clone();
    let record = on_queue(&api, move |q| q.get(&lookup)).await?;
    match record {
        Some(r) => Ok(axum::Json(view(r)).into_response()),
        None => Err(ApiError(PlatformError::new(ErrorCode::NotFound, format!("no asynchronous invocation {id}")))),
    }
}

#[derive(Deserialize)]
pub(crate) struct LimitQuery {
    limit: Option<u32>,
}

/// `GET /v1/functions/{name}/invocations`: the newest asynchronous invocations.
pub(crate) async fn list(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let name = parse_name(&name)?.to_string();
    let limit = q.limit.unwrap_or(20).clamp(1, 1000);
    let records = on_queue(&api, move |q| q.recent(&name, limit)).await?;
    Ok(axum::Json(InvocationList { invocations: records.into_iter().map(view).collect() }).into_response())
}

pub(crate) async fn list_dead(
    State(api): State<Api>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let name = parse_name(&name)?.to_string();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let records = on_queue(&api, move |q| q.dead_letters(&name, limit)).await?;
    Ok(axum::Json(DeadLetters { entries: records.into_iter().map(view).collect() }).into_response())
}

async fn selection(body: Body) -> Result<DeadLetterSelection, ApiError> {
    let bytes = read_body(&HeaderMap::new(), body, 1024 * 1024).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(DeadLetterSelection::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError(PlatformError::new(ErrorCode::BadRequest, format!("expected {{\"ids\": [...]}}: {e}"))))
}

pub(crate) async fn redrive(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = parse_name(&name)?.to_string();
    let ids = selection(body).await?.ids;
    let count = on_queue(&api, move |q| q.redrive(&name, &ids)).await?;
    invoker(&api)?.nudge();
    Ok(axum::Json(DeadLetterCount { count }).into_response())
}

pub(crate) async fn purge(State(api): State<Api>, Path(name): Path<String>, body: Body) -> Result<Response, ApiError> {
    let name = parse_name(&name)?.to_string();
    let ids = selection(body).await?.ids;
    let count = on_queue(&api, move |q| q.purge(&name, &ids)).await?;
    Ok(axum::Json(DeadLetterCount { count }).into_response())
}

/// `POST /v1/queues/{queue}/messages`: 202 once the message is on disk.
pub(crate) async fn send_message(
    State(api): State<Api>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let invoker = invoker(&api)?.clone();
    let queue = parse_queue(&queue)?;
    let body = read_body(&headers, body, api.config.max_body_bytes).await?;
    let id = invoker.send_to_queue(&queue, body.to_vec()).await.map_err(internal)?;
    Ok((StatusCode::ACCEPTED, axum::Json(QueueSent { id })).into_response())
}

fn parse_queue(name: &str) -> Result<String, ApiError> {
    nimbus_core::FunctionName::parse(name).map(|n| n.to_string()).map_err(|_| {
        ApiError(PlatformError::new(
            ErrorCode::BadRequest,
            format!("queue name {name:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter"),
        ))
    })
}

/// `GET /v1/queues`: every queue with messages or consumers.
pub(crate) async fn list_queues(State(api): State<Api>) -> Result<Response, ApiError> {
    let depths = on_queue(&api, |q| q.queue_depths()).await?;
    let mut consumers: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in api.functions.scheduler().table().functions() {
        for q in &f.record.spec.queues {
            consumers.entry(q.name.clone()).or_default().push(f.name().to_string());
        }
    }
    let now = nimbus_store::now_ms();
    let mut queues: Vec<QueueInfo> = depths
        .into_iter()
        .map(|d| QueueInfo {
            consumers: consumers
                .remove(&d.queue)
                .map(|mut c| {
                    c.sort();
                    c
                })
                .unwrap_or_default(),
            name: d.queue,
            ready: d.ready,
            in_flight: d.in_flight,
            dead: d.dead,
            oldest_ready_age_s: d.oldest_ready_ms.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(0.0),
        })
        .collect();
    for (name, mut c) in consumers {
        c.sort();
        queues.push(QueueInfo { name, ready: 0, in_flight: 0, dead: 0, oldest_ready_age_s: 0.0, consumers: c });
    }
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(axum::Json(QueueList { queues }).into_response())
}

/// `GET /v1/queues/{queue}/dlq`.
pub(crate) async fn queue_dead(
    State(api): State<Api>,
    Path(queue): Path<String>,
    Query(q): Query<LimitQuery>,
) -> Result<Response, ApiError> {
    let queue = parse_queue(&queue)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let dead = on_queue(&api, move |q| q.queue_dead_letters(&queue, limit)).await?;
    let messages = dead
        .into_iter()
        .map(|m| DeadMessage {
            id: m.id,
            sent_at: format_rfc3339(m.sent_at_ms),
            receive_count: m.receive_count,
            body: String::from_utf8_lossy(&m.body).into_owned(),
            error: m.last_error,
        })
        .collect();
    Ok(axum::Json(DeadMessages { messages }).into_response())
}

/// `POST /v1/queues/{queue}/dlq/redrive`.
pub(crate) async fn queue_redrive(State(api): State<Api>, Path(queue): Path<String>) -> Result<Response, ApiError> {
    let queue = parse_queue(&queue)?;
    let count = on_queue(&api, move |q| q.redrive_queue(&queue)).await?;
    invoker(&api)?.nudge_queues();
    Ok(axum::Json(DeadLetterCount { count }).into_response())
}
