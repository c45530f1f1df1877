//! The public HTTP ingress of a node: maps each request to a deployed
//! function by its route table, enforces the body limit before reading the
//! body, hands an `Invocation` to the scheduler and writes the `Outcome` back.
//! Every response carries `x-nimbus-request-id`; platform failures are JSON.
//!
//! It knows nothing of runtimes or storage, only the scheduler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use nimbus_core::{Body, ErrorCode, Invocation, PlatformError, REQUEST_ID_HEADER, RequestId, Trigger};
use nimbus_scheduler::Scheduler;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the gateway treats requests.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Largest request body accepted; larger ones get 413 unread.
    pub max_body_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { max_body_bytes: 6 * 1024 * 1024 }
    }
}

pub struct Gateway {
    scheduler: Arc<Scheduler>,
    config: GatewayConfig,
}

impl Gateway {
    pub fn new(scheduler: Arc<Scheduler>, config: GatewayConfig) -> Arc<Self> {
        Arc::new(Self { scheduler, config })
    }

    /// Serves `listener` until `shutdown` is cancelled, then lets open
    /// connections finish their current request (up to `drain`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken, drain: Duration) {
        let tracker = TaskTracker::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!("gateway accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move { gateway.serve_connection(stream, peer, shutdown).await });
        }
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!("gateway: connections still open after {drain:?}, closing them");
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let service = service_fn(move |req| {
            let gateway = self.clone();
            async move { Ok::<_, std::convert::Infallible>(gateway.handle(req).await) }
        });
        let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("gateway connection from {peer}: {e}");
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    /// One gateway request, start to finish.
    pub async fn handle(&self, req: hyper::Request<Incoming>) -> hyper::Response<ResponseBody> {
        let request_id = RequestId::generate();
        let table = self.scheduler.table();
        let route = match table.route(req.uri().path(), req.method().as_str()) {
            Ok(route) => route,
            Err(e) => {
                if e.code == ErrorCode::NotFound {
                    self.scheduler.metrics().unrouted();
                }
                return error_response(&e, &request_id, false);
            }
        };
        drop(table);
        let function = route.function;

        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit = self.config.max_body_bytes;
        if declared.is_some_and(|n| n > limit as u64) {
            return error_response(&too_large(limit), &request_id, true);
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return error_response(&too_large(limit), &request_id, true);
            }
            Err(e) => {
                let err = PlatformError::new(ErrorCode::BadRequest, format!("could not read the request body: {e}"));
                return error_response(&err, &request_id, true);
            }
        };

        let request = http::Request::from_parts(parts, body);
        let mut invocation = Invocation::with_request_id(function.name().clone(), request_id, request);
        invocation.trigger = Trigger::Http;
        let outcome = self.scheduler.invoke(function, invocation).await;
        match outcome.result {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Ok(id) = http::HeaderValue::from_str(outcome.request_id.as_str()) {
                    parts.headers.insert(REQUEST_ID_HEADER, id);
                }
                hyper::Response::from_parts(parts, ResponseBody::from(body))
            }
            Err(e) => error_response(&e, &outcome.request_id, false),
        }
    }
}

fn too_large(limit: usize) -> PlatformError {
    PlatformError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// A platform error as a response. `close` asks the client to close the
/// connection: used when the request body was left unread.
fn error_response(e: &PlatformError, request_id: &RequestId, close: bool) -> hyper::Response<ResponseBody> {
    let response = e.to_response(Some(request_id));
    let (mut parts, body) = response.into_parts();
    if close {
        parts.headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    hyper::Response::from_parts(parts, ResponseBody::from(Body::Full(body)))
}

/// A response body on the wire: whole, or streamed chunk by chunk as the
/// function produces it. A stream that fails aborts the response, so the
/// client sees a truncated body rather than a complete-looking one.
pub enum ResponseBody {
    Full(Full<Bytes>),
    Streaming(tokio::sync::mpsc::Receiver<Result<Bytes, String>>),
}

impl From<Body> for ResponseBody {
    fn from(body: Body) -> Self {
        match body {
            Body::Full(bytes) => Self::Full(Full::new(bytes)),
            Body::Streaming(rx) => Self::Streaming(rx),
        }
    }
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match self.get_mut() {
            Self::Full(full) => std::pin::Pin::new(full).poll_frame(cx).map_err(|never| match never {}),
            Self::Streaming(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(full) => full.is_end_stream(),
            Self::Streaming(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Self::Full(full) => full.size_hint(),
            Self::Streaming(_) => hyper::body::SizeHint::default(),
        }
    }
}
