//! The ceiling for the process-function benchmark (bench/process.py): the
//! Rust fixture's handler (test-programs/lambda/rust) with no platform in
//! between. A hyper HTTP/1.1 server on a multi-threaded tokio runtime, as
//! the fixture's `lambda_runtime` client uses, that per request does the
//! JSON work a Lambda function does itself and nothing else:
//!
//! 1. builds the API Gateway v2 event the handler sees (`version`,
//!    `routeKey`, `rawPath`, `rawQueryString`, `headers`, `requestContext`
//!    with `http.method`/`path`, `isBase64Encoded`) and serialises it, as
//!    the event arrives at a runtime as bytes;
//! 2. parses it into a `serde_json::Value` (what `lambda_runtime` does),
//!    runs the fixture's `dispatch` and its `http` action, and serialises
//!    the result (what `lambda_runtime` posts back);
//! 3. reads `statusCode`, `headers` and `body` back out of that result, as
//!    an API Gateway does, and answers with them.
//!
//! So `/rust/http` answers 200 with `{"from":"rust"}` and
//! `content-type: application/json`, the bytes the fixture answers through
//! nimbus. Other paths answer 404: only the `http` action is benchmarked.
//!
//! Usage: lambda-baseline ADDR (prints `listening on http://ADDR`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The fixture's `dispatch`, verbatim but for the unused parameters.
fn dispatch(event: &Value) -> String {
    let is_http = event.get("version").and_then(Value::as_str) == Some("2.0") && event.get("rawPath").is_some();
    if is_http {
        let path = event["rawPath"].as_str().unwrap_or("");
        let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let action = if last.is_empty() { "echo" } else { last };
        return action.to_owned();
    }
    event.get("action").and_then(Value::as_str).unwrap_or("echo").to_owned()
}

/// The fixture's handler for the `http` action; `None` for the others.
fn handler(event: Value) -> Option<Value> {
    match dispatch(&event).as_str() {
        "http" => Some(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": "{\"from\":\"rust\"}",
        })),
        _ => None,
    }
}

fn event_bytes<B>(req: &hyper::Request<B>) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        headers.insert(name.as_str().to_owned(), Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()));
    }
    let path = req.uri().path();
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": req.uri().query().unwrap_or(""),
        "headers": headers,
        "requestContext": {"http": {"method": req.method().as_str(), "path": path}},
        "isBase64Encoded": false,
    });
    serde_json::to_vec(&event).unwrap_or_default()
}

fn respond<B>(req: &hyper::Request<B>) -> hyper::Response<Full<Bytes>> {
    let event: Value = serde_json::from_slice(&event_bytes(req)).unwrap_or(Value::Null);
    let Some(result) = handler(event) else {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"not benchmarked\n")));
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
        return response;
    };
    let posted = serde_json::to_vec(&result).unwrap_or_default();
    let result: Value = serde_json::from_slice(&posted).unwrap_or(Value::Null);
    let status = result["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(500);
    let body = result["body"].as_str().unwrap_or("").to_owned();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(headers) = result["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                hyper::header::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(hyper::header::HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(respond(&req)) });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
