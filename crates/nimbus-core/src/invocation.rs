use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{FunctionName, PlatformError, RequestId};

/// One call of one function, whatever triggered it. The HTTP request is the
/// payload: triggers that are not HTTP build one.
#[derive(Debug)]
pub struct Invocation {
    pub function: FunctionName,
    pub request_id: RequestId,
    pub request: http::Request<Bytes>,
    /// What kind of caller this is, which decides the event a native
    /// (Lambda-style) function receives.
    pub trigger: Trigger,
    /// When the platform received the invocation; the deadline counts from here.
    pub received_at: Instant,
    /// Context shown first in the invocation's log entry, e.g. which
    /// asynchronous invocation and attempt this is.
    pub note: Option<String>,
}

/// Who invoked: Wasm functions always receive the HTTP request; native
/// functions receive an API Gateway v2 event for [`Trigger::Http`] and the
/// request body itself as the event otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A request on the gateway, through one of the function's routes.
    Http,
    /// An event: API or Lambda Invoke API calls, async invocations,
    /// schedules, queues, destinations.
    Event,
}

impl Invocation {
    pub fn new(function: FunctionName, request: http::Request<Bytes>) -> Self {
        Self::with_request_id(function, RequestId::generate(), request)
    }

    /// For triggers that assigned the id already (e.g. to answer errors
    /// found before the invocation existed).
    pub fn with_request_id(function: FunctionName, request_id: RequestId, request: http::Request<Bytes>) -> Self {
        Self { function, request_id, request, trigger: Trigger::Event, received_at: Instant::now(), note: None }
    }
}

/// A response body: whole, or streamed as the function produces it
/// (Lambda response streaming).
#[derive(Debug)]
pub enum Body {
    Full(Bytes),
    /// Chunks as they come; an `Err` ends the stream with the function's error.
    Streaming(tokio::sync::mpsc::Receiver<Result<Bytes, String>>),
}

impl Body {
    /// The bytes of a whole body; empty for a stream (use [`Body::collect`]).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Full(b) => b,
            Body::Streaming(_) => &[],
        }
    }

    /// The whole body, waiting for a stream to end. Fails if the stream
    /// ends with an error or grows past `limit` bytes.
    pub async fn collect(self, limit: usize) -> Result<Bytes, String> {
        match self {
            Body::Full(b) => Ok(b),
            Body::Streaming(mut rx) => {
                let mut out = bytes::BytesMut::new();
                while let Some(chunk) = rx.recv().await {
                    let chunk = chunk?;
                    if out.len() + chunk.len() > limit {
                        return Err(format!("the streamed response is larger than {limit} bytes"));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(out.freeze())
            }
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body::Full(b)
    }
}

/// What came back from one invocation.
#[derive(Debug)]
pub struct Outcome {
    pub request_id: RequestId,
    pub result: Result<http::Response<Body>, PlatformError>,
    /// Time spent running the guest (instantiation included).
    pub duration: Duration,
    /// What the guest wrote to stdout and stderr, bounded.
    pub output: CapturedOutput,
    /// Set when a native function started a new instance for this
    /// invocation (a cold start): how long its initialisation took.
    pub init: Option<Duration>,
}

/// Streamed bodies are collected up to this size by callers that need the
/// whole response (async invocations, queues, the Invoke API).
pub const MAX_BUFFERED_STREAM_BYTES: usize = 20 * 1024 * 1024;

impl Outcome {
    /// The outcome with any streamed body collected: for callers that need
    /// the whole response. A stream that fails becomes a `function_error`.
    pub async fn buffered(self) -> Self {
        let result = match self.result {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                match body.collect(MAX_BUFFERED_STREAM_BYTES).await {
                    Ok(bytes) => Ok(http::Response::from_parts(parts, Body::Full(bytes))),
                    Err(e) => Err(PlatformError::new(crate::ErrorCode::FunctionError, e)),
                }
            }
            Err(e) => Err(e),
        };
        Self { result, ..self }
    }
}

/// Guest output, kept up to a bound, with a note of how much was dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CapturedOutput {
    pub text: String,
    pub truncated_bytes: u64,
}

impl CapturedOutput {
    pub const TRUNCATION_MARKER: &'static str = "[nimbus: output truncated";

    /// The text as it is shown to users, with the truncation marker if needed.
    pub fn display(&self) -> String {
        if self.truncated_bytes == 0 {
            self.text.clone()
        } else {
            format!("{}\n{}, {} bytes dropped]\n", self.text, Self::TRUNCATION_MARKER, self.truncated_bytes)
        }
    }
}
