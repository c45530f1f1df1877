//! The AWS Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`)
//! on the control listener, so boto3, the AWS CLI and the SDKs work with
//! their endpoint pointed at nimbus. It invokes Wasm and process functions.
//!
//! - `X-Amz-Invocation-Type`: `RequestResponse` (default) runs the function
//!   and answers with its result; `Event` puts the invocation on the durable
//!   asynchronous queue (202); `DryRun` checks the function exists (204).
//! - A function that fails answers 200 with `X-Amz-Function-Error: Unhandled`
//!   and the error document, as Lambda does; platform refusals answer with
//!   Lambda's status and `x-amzn-ErrorType` (e.g. 429
//!   `TooManyRequestsException`).
//! - `X-Amz-Log-Type: Tail` returns the last 4 KB of the invocation's log,
//!   base64, in `X-Amz-Log-Result`.
//!
//! With a node token, a caller sends it as `Authorization: Bearer <token>`,
//! or as the access key id of an AWS Signature V4 header
//! (`AWS_ACCESS_KEY_ID=<token>`); the signature itself is not verified.

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use nimbus_core::{ErrorCode, FunctionName, Invocation, Outcome, PlatformError, REQUEST_ID_HEADER};
use nimbus_store::StoredRequest;
use serde::Deserialize;

use crate::routes::{Api, constant_time_eq};

/// The version every invocation reports running: nimbus deploys replace
/// `$LATEST`; published versions and aliases are not modelled yet.
const EXECUTED_VERSION: &str = "$LATEST";
/// Lambda returns at most this much of the log tail.
const LOG_TAIL_BYTES: usize = 4096;

#[derive(Deserialize)]
pub(crate) struct InvokeParams {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// An error as Lambda's API reports it (not a function error).
struct AwsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl AwsError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "Type": "User", "message": self.message, "__type": self.kind }).to_string();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.kind));
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(nimbus_core::RETRY_AFTER_SECS));
        }
        response
    }
}

/// Lambda's answer to a platform refusal.
fn refusal(e: &PlatformError) -> AwsError {
    let (status, kind) = match e.code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        ErrorCode::Throttled => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
        ErrorCode::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException"),
        ErrorCode::BadRequest | ErrorCode::MethodNotAllowed => {
            (StatusCode::BAD_REQUEST, "InvalidParameterValueException")
        }
        ErrorCode::Unauthorized => (StatusCode::FORBIDDEN, "UnrecognizedClientException"),
        ErrorCode::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceException"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
    };
    AwsError::new(status, kind, e.message.clone())
}

/// Accepts the node token as a bearer token or as a SigV4 access key id.
pub(crate) async fn require_token(State(api): State<Api>, request: Request, next: Next) -> Response {
    let Some(token) = &api.config.token else { return next.run(request).await };
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let presented = authorization.strip_prefix("Bearer ").or_else(|| {
        let credential = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")?
            .split(',')
            .find_map(|part| part.trim().strip_prefix("Credential=").and_then(|c| c.split('/').next()))?;
        Some(credential)
    });
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    AwsError::new(
        StatusCode::FORBIDDEN,
        "UnrecognizedClientException",
        "this node requires its token: Authorization: Bearer <token>, or AWS_ACCESS_KEY_ID=<token>",
    )
    .into_response()
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, `NAME:QUALIFIER` or `NAME`.
fn function_and_qualifier(raw: &str) -> (&str, Option<&str>) {
    let rest = raw.find("function:").map(|i| &raw[i + "function:".len()..]).unwrap_or(raw);
    match rest.split_once(':') {
        Some((name, qualifier)) => (name, Some(qualifier)),
        None => (rest, None),
    }
}

pub(crate) async fn invoke(
    State(api): State<Api>,
    Path(raw_name): Path<String>,
    Query(params): Query<InvokeParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match run(&api, &raw_name, params, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run(
    api: &Api,
    raw_name: &str,
    params: InvokeParams,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, AwsError> {
    let (name, path_qualifier) = function_and_qualifier(raw_name);
    let name = FunctionName::parse(name)
        .map_err(|e| AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", e.to_string()))?;
    let function = api.functions.scheduler().table().get(&name).cloned().ok_or_else(|| {
        AwsError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {}", api.functions.scheduler().process().function_arn(name.as_str())),
        )
    })?;
    if let Some(q) = params.qualifier.as_deref().or(path_qualifier).filter(|q| *q != EXECUTED_VERSION) {
        return Err(AwsError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {name}:{q} (nimbus serves $LATEST only)"),
        ));
    }
    let invocation_type = header_str(headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    let tail = header_str(headers, "x-amz-log-type").is_some_and(|t| t.eq_ignore_ascii_case("Tail"));
    let payload =
        crate::routes::read_body(headers, body, api.config.max_body_bytes).await.map_err(|e| refusal(&e.0))?;
    let payload = if payload.iter().all(u8::is_ascii_whitespace) { Bytes::from_static(b"{}") } else { payload };
    if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json: the payload must be JSON",
        ));
    }
    let path = function.record.spec.default_path();
    let mut forwarded = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(context) = header_str(headers, "x-amz-client-context") {
        forwarded.push(("x-amz-client-context".to_owned(), context.to_owned()));
    }

    match invocation_type {
        "DryRun" => Ok(with_version(StatusCode::NO_CONTENT.into_response())),
        "Event" => {
            let invoker = api.invoker.as_ref().ok_or_else(|| {
                AwsError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceException", "asynchronous invocations are off")
            })?;
            let request = StoredRequest { method: "POST".into(), path, headers: forwarded, body: payload.to_vec() };
            let accepted = invoker
                .submit(&name, request, None)
                .await
                .map_err(|e| AwsError::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", e.to_string()))?;
            let mut response = with_version(StatusCode::ACCEPTED.into_response());
            if let Ok(id) = HeaderValue::from_str(&accepted.id) {
                response.headers_mut().insert("x-amzn-requestid", id);
            }
            Ok(response)
        }
        "RequestResponse" => {
            let mut request = http::Request::builder()
                .method("POST")
                .uri(&path)
                .header(header::HOST, "localhost")
                .body(payload)
                .map_err(|e| AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", e.to_string()))?;
            for (k, v) in &forwarded {
                if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                    request.headers_mut().insert(k, v);
                }
            }
            let memory_mb = function.record.spec.limits.memory_mb;
            let outcome =
                api.functions.scheduler().invoke(function, Invocation::new(name, request)).await.buffered().await;
            answer(outcome, tail, memory_mb)
        }
        other => Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            format!("X-Amz-Invocation-Type {other:?}: use RequestResponse, Event or DryRun"),
        )),
    }
}

/// The Invoke API's answer to a finished invocation.
fn answer(outcome: Outcome, tail: bool, memory_mb: u32) -> Result<Response, AwsError> {
    let log = tail.then(|| log_tail(&outcome, memory_mb));
    let (status, function_error, body) = match &outcome.result {
        Ok(response) if response.status().is_server_error() => {
            let text = String::from_utf8_lossy(response.body().as_bytes()).into_owned();
            let doc = serde_json::json!({
                "errorMessage": format!("the function answered HTTP {}: {text}", response.status()),
                "errorType": "Function.HttpError",
            });
            (StatusCode::OK, Some("Unhandled"), Bytes::from(doc.to_string()))
        }
        Ok(response) => (StatusCode::OK, None, Bytes::copy_from_slice(response.body().as_bytes())),
        Err(e) if is_function_failure(e.code) => {
            let body = match &e.reported {
                Some(reported) => reported.body.clone(),
                None => Bytes::from(
                    serde_json::json!({
                        "errorMessage": format!("RequestId: {} Error: {}", outcome.request_id, e.message),
                        "errorType": error_type(e.code),
                    })
                    .to_string(),
                ),
            };
            (StatusCode::OK, Some("Unhandled"), body)
        }
        Err(e) => return Err(refusal(e)),
    };
    let mut response = with_version((status, body).into_response());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(kind) = function_error {
        h.insert("x-amz-function-error", HeaderValue::from_static(kind));
    }
    if let Ok(id) = HeaderValue::from_str(outcome.request_id.as_str()) {
        h.insert("x-amzn-requestid", id.clone());
        h.insert(REQUEST_ID_HEADER, id);
    }
    if let Some(log) = log.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert("x-amz-log-result", log);
    }
    Ok(response)
}

fn is_function_failure(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::FunctionError
            | ErrorCode::FunctionInitError
            | ErrorCode::FunctionCrashed
            | ErrorCode::FunctionOutOfMemory
            | ErrorCode::FunctionTimeout
    )
}

/// Lambda's error type for a failure nimbus detected itself.
fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::FunctionTimeout => "Sandbox.Timedout",
        ErrorCode::FunctionOutOfMemory => "Runtime.OutOfMemory",
        ErrorCode::FunctionInitError => "Runtime.InitError",
        ErrorCode::FunctionCrashed => "Runtime.ExitError",
        _ => "Runtime.Unknown",
    }
}

/// The invocation's log as Lambda writes it (START, output, END, REPORT),
/// its last 4 KB, base64.
fn log_tail(outcome: &Outcome, memory_mb: u32) -> String {
    let id = &outcome.request_id;
    // Lambda reports the init phase apart from the invocation's duration.
    let ms = outcome.duration.saturating_sub(outcome.init.unwrap_or_default()).as_secs_f64() * 1000.0;
    let mut log = format!("START RequestId: {id} Version: {EXECUTED_VERSION}\n");
    log.push_str(&outcome.output.display());
    if !log.ends_with('\n') {
        log.push('\n');
    }
    log.push_str(&format!(
        "END RequestId: {id}\nREPORT RequestId: {id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB",
        ms.ceil() as u64
    ));
    if let Some(init) = outcome.init {
        log.push_str(&format!("\tInit Duration: {:.2} ms", init.as_secs_f64() * 1000.0));
    }
    log.push('\n');
    let bytes = log.as_bytes();
    let mut start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
    while start < bytes.len() && !log.is_char_boundary(start) {
        start += 1;
    }
    BASE64.encode(&bytes[start..])
}

fn with_version(mut response: Response) -> Response {
    response.headers_mut().insert("x-amz-executed-version", HeaderValue::from_static(EXECUTED_VERSION));
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_be_arns_with_qualifiers() {
        assert_eq!(function_and_qualifier("orders"), ("orders", None));
        assert_eq!(function_and_qualifier("orders:$LATEST"), ("orders", Some("$LATEST")));
        assert_eq!(
            function_and_qualifier("arn:aws:lambda:us-east-1:000000000000:function:orders:7"),
            ("orders", Some("7"))
        );
    }

    #[test]
    fn log_tails_are_lambda_shaped_and_bounded() {
        let outcome = Outcome {
            request_id: nimbus_core::RequestId::from_string("r1".into()),
            result: Err(PlatformError::new(ErrorCode::FunctionTimeout, "t")),
            duration: std::time::Duration::from_millis(12),
            output: nimbus_core::CapturedOutput { text: "x".repeat(10_000), truncated_bytes: 0 },
            init: Some(std::time::Duration::from_millis(30)),
        };
        let decoded = String::from_utf8(BASE64.decode(log_tail(&outcome, 128)).unwrap()).unwrap();
        assert!(decoded.len() <= LOG_TAIL_BYTES);
        assert!(decoded.contains("END RequestId: r1"));
        assert!(decoded.contains("Memory Size: 128 MB\tInit Duration: 30.00 ms"));
    }
}
