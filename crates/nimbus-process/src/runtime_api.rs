//! The AWS Lambda Runtime API (version 2018-06-01) one instance talks to,
//! served on its own loopback port: `GET …/invocation/next` hands out the
//! next event, `POST …/invocation/{id}/response` and `…/error` answer it,
//! `POST …/init/error` reports a failed start. Errors are answered as the
//! Lambda service answers them (`InvalidRequestID` 400,
//! `InvalidStateTransition` 403, `RequestEntityTooLarge` 413).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use nimbus_core::ReportedError;
use tokio::sync::{mpsc, oneshot, watch};

/// Largest buffered response a runtime may post (as Lambda: 6 MiB).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Largest streamed response (Lambda's soft limit is 20 MiB).
pub const MAX_STREAMED_BYTES: usize = 20 * 1024 * 1024;
/// Largest error document a runtime may post.
const MAX_ERROR_BYTES: usize = 1024 * 1024;

const PREFIX: &str = "/2018-06-01/runtime/";

/// One event waiting to be handed to the runtime.
pub(crate) struct Event {
    pub request_id: String,
    pub body: Bytes,
    /// `Lambda-Runtime-*` headers for this event.
    pub headers: HeaderMap,
    pub reply: oneshot::Sender<Reply>,
}

/// How the runtime answered an event.
pub(crate) enum Reply {
    Response {
        body: Bytes,
        content_type: Option<String>,
    },
    /// A streamed response: chunks arrive on `chunks`; `done` fires when the
    /// runtime has finished posting it.
    Stream {
        content_type: Option<String>,
        chunks: mpsc::Receiver<Result<Bytes, String>>,
        done: oneshot::Receiver<()>,
    },
    Error(ReportedError),
    /// The runtime posted a response over the limit; it was refused with 413.
    TooLarge,
    /// The runtime asked for the next event without answering this one.
    Abandoned,
}

/// Where the instance's start-up stands.
#[derive(Clone, Debug)]
pub(crate) enum InitState {
    Starting,
    /// The runtime asked for its first event.
    Ready,
    Failed(ReportedError),
}

/// The state shared by the Runtime API server of one instance and the pool.
pub(crate) struct RuntimeApi {
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    current: Mutex<Current>,
    init: watch::Sender<InitState>,
}

#[derive(Default)]
struct Current {
    request_id: Option<String>,
    /// Taken when the runtime answers; `None` afterwards.
    reply: Option<oneshot::Sender<Reply>>,
}

impl RuntimeApi {
    pub fn new() -> (Arc<Self>, mpsc::Sender<Event>, watch::Receiver<InitState>) {
        let (events_tx, events_rx) = mpsc::channel(1);
        let (init, init_rx) = watch::channel(InitState::Starting);
        let api = Arc::new(Self {
            events: tokio::sync::Mutex::new(events_rx),
            current: Mutex::new(Current::default()),
            init,
        });
        (api, events_tx, init_rx)
    }

    /// Serves the API on `listener` until the task is aborted.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let api = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(api.handle(req).await) }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }

    async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix(PREFIX) else {
            return answer(StatusCode::NOT_FOUND, "NotFound", &format!("no such Runtime API path: {path}"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (req.method(), parts.as_slice()) {
            (&Method::GET, ["invocation", "next"]) => self.next().await,
            (&Method::POST, ["invocation", id, "response"]) => {
                let id = (*id).to_owned();
                self.response(&id, req).await
            }
            (&Method::POST, ["invocation", id, "error"]) => {
                let id = (*id).to_owned();
                self.error(&id, req).await
            }
            (&Method::POST, ["init", "error"]) => self.init_error(req).await,
            _ => {
                answer(StatusCode::NOT_FOUND, "NotFound", &format!("no such Runtime API call: {} {path}", req.method()))
            }
        }
    }

    async fn next(&self) -> hyper::Response<Full<Bytes>> {
        self.init.send_if_modified(|state| match state {
            InitState::Starting => {
                *state = InitState::Ready;
                true
            }
            _ => false,
        });
        // An event still unanswered is lost to a runtime that asks for the next.
        if let Some(reply) = self.lock_current().reply.take() {
            let _ = reply.send(Reply::Abandoned);
        }
        let mut events = self.events.lock().await;
        let Some(event) = events.recv().await else {
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "InstanceStopping", "this instance is shutting down");
        };
        drop(events);
        {
            let mut current = self.lock_current();
            current.request_id = Some(event.request_id.clone());
            current.reply = Some(event.reply);
        }
        let mut response = hyper::Response::new(Full::new(event.body));
        *response.headers_mut() = event.headers;
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }

    /// The invocation the runtime took last from `next`.
    pub fn current_request_id(&self) -> Option<String> {
        self.lock_current().request_id.clone()
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reply channel of invocation `id`, or the documented error answer.
    fn claim(&self, id: &str) -> Result<oneshot::Sender<Reply>, Box<hyper::Response<Full<Bytes>>>> {
        let mut current = self.lock_current();
        if current.request_id.as_deref() != Some(id) {
            return Err(Box::new(answer(StatusCode::BAD_REQUEST, "InvalidRequestID", "Invalid request ID")));
        }
        current.reply.take().ok_or_else(|| {
            Box::new(answer(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                &format!("invocation {id} has already been answered"),
            ))
        })
    }

    async fn response(&self, id: &str, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let reply = match self.claim(id) {
            Ok(reply) => reply,
            Err(answer) => return *answer,
        };
        let content_type = header_str(req.headers(), http::header::CONTENT_TYPE.as_str());
        let streaming = header_str(req.headers(), "lambda-runtime-function-response-mode")
            .is_some_and(|mode| mode.eq_ignore_ascii_case("streaming"));
        if streaming {
            return stream_response(reply, content_type, req.into_body()).await;
        }
        match Limited::new(req.into_body(), MAX_RESPONSE_BYTES).collect().await {
            Ok(collected) => {
                let _ = reply.send(Reply::Response { body: collected.to_bytes(), content_type });
                accepted()
            }
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                let _ = reply.send(Reply::TooLarge);
                answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                )
            }
            Err(e) => {
                let _ = reply.send(Reply::Error(reported(
                    "Runtime.TruncatedResponse",
                    &format!("the response could not be read: {e}"),
                )));
                answer(StatusCode::BAD_REQUEST, "TruncatedHTTPRequest", &format!("cannot read the response: {e}"))
            }
        }
    }

    async fn error(&self, id: &str, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        let reply = match self.claim(id) {
            Ok(reply) => reply,
            Err(answer) => return *answer,
        };
        let error = read_error(req).await;
        let _ = reply.send(Reply::Error(error));
        accepted()
    }

    async fn init_error(&self, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
        if !matches!(*self.init.borrow(), InitState::Starting) {
            return answer(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "init/error is only accepted before the first invocation/next",
            );
        }
        let error = read_error(req).await;
        self.init.send_replace(InitState::Failed(error));
        accepted()
    }
}

/// Forwards a streamed response body chunk by chunk; answers once the
/// runtime has sent all of it. An error reported in the trailers
/// (`Lambda-Runtime-Function-Error-Type`/`-Body`) ends the stream with it.
async fn stream_response(
    reply: oneshot::Sender<Reply>,
    content_type: Option<String>,
    mut body: Incoming,
) -> hyper::Response<Full<Bytes>> {
    let (chunks_tx, chunks) = mpsc::channel(16);
    let (done_tx, done) = oneshot::channel();
    let _ = reply.send(Reply::Stream { content_type, chunks, done });
    let mut sent = 0usize;
    let mut failure = None;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => {
                    sent += data.len();
                    if sent > MAX_STREAMED_BYTES {
                        failure = Some(format!("the streamed response exceeded {MAX_STREAMED_BYTES} bytes"));
                        break;
                    }
                    let _ = chunks_tx.send(Ok(data)).await;
                }
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && let Some(kind) = header_str(trailers, "lambda-runtime-function-error-type")
                    {
                        let detail = header_str(trailers, "lambda-runtime-function-error-body")
                            .and_then(|b| {
                                use base64::Engine;
                                base64::engine::general_purpose::STANDARD.decode(b).ok()
                            })
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default();
                        failure = Some(format!("{kind}: {detail}"));
                    }
                }
            },
            Err(e) => {
                failure = Some(format!("the runtime stopped sending the response: {e}"));
                break;
            }
        }
    }
    let status = match &failure {
        Some(e) if sent > MAX_STREAMED_BYTES => {
            let _ = chunks_tx.send(Err(e.clone())).await;
            answer(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", e)
        }
        Some(e) => {
            let _ = chunks_tx.send(Err(e.clone())).await;
            accepted()
        }
        None => accepted(),
    };
    drop(chunks_tx);
    let _ = done_tx.send(());
    status
}

/// Reads an error document; the type comes from the JSON body or, failing
/// that, the `Lambda-Runtime-Function-Error-Type` header.
async fn read_error(req: hyper::Request<Incoming>) -> ReportedError {
    let header_type = header_str(req.headers(), "lambda-runtime-function-error-type");
    let body = match Limited::new(req.into_body(), MAX_ERROR_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    error_from(header_type, body)
}

pub(crate) fn error_from(header_type: Option<String>, body: Bytes) -> ReportedError {
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        #[serde(rename = "errorMessage")]
        error_message: Option<String>,
    }
    let doc: Option<Doc> = serde_json::from_slice(&body).ok();
    let body_is_object = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body).is_ok();
    let error_type = doc
        .as_ref()
        .and_then(|d| d.error_type.clone())
        .filter(|t| !t.is_empty())
        .or(header_type)
        .unwrap_or_else(|| "Unhandled".to_owned());
    let error_message = doc.and_then(|d| d.error_message).unwrap_or_default();
    let body = if body_is_object {
        body
    } else {
        let message =
            if error_message.is_empty() { String::from_utf8_lossy(&body).into_owned() } else { error_message.clone() };
        Bytes::from(serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string())
    };
    ReportedError { error_type, error_message, body }
}

pub(crate) fn reported(error_type: &str, message: &str) -> ReportedError {
    ReportedError {
        error_type: error_type.to_owned(),
        error_message: message.to_owned(),
        body: Bytes::from(serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string()),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn accepted() -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{\"status\":\"OK\"}")));
    *response.status_mut() = StatusCode::ACCEPTED;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// An error answer in the Runtime API's format.
fn answer(status: StatusCode, error_type: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_type_comes_from_the_body_or_the_header() {
        let e = error_from(
            Some("Header.Type".into()),
            Bytes::from_static(br#"{"errorMessage":"m","errorType":"Body.Type"}"#),
        );
        assert_eq!((e.error_type.as_str(), e.error_message.as_str()), ("Body.Type", "m"));
        let e = error_from(Some("Header.Type".into()), Bytes::from_static(br#"{"errorMessage":"only message"}"#));
        assert_eq!(e.error_type, "Header.Type");
        let e = error_from(Some("Header.Only".into()), Bytes::new());
        assert_eq!(e.error_type, "Header.Only");
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["errorType"], "Header.Only");
        let e = error_from(None, Bytes::from_static(b"plain text"));
        assert_eq!((e.error_type.as_str(), e.error_message.as_str()), ("Unhandled", ""));
        let v: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(v["errorMessage"], "plain text");
    }
}
