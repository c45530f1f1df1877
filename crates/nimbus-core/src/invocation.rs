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
    /// When the platform received the invocation; the deadline counts from here.
    pub received_at: Instant,
    /// Context shown first in the invocation's log entry, e.g. which
    /// asynchronous invocation and attempt this is.
    pub note: Option<String>,
}

impl Invocation {
    pub fn new(function: FunctionName, request: http::Request<Bytes>) -> Self {
        Self::with_request_id(function, RequestId::generate(), request)
    }

    /// For triggers that assigned the id already (e.g. to answer errors
    /// found before the invocation existed).
    pub fn with_request_id(function: FunctionName, request_id: RequestId, request: http::Request<Bytes>) -> Self {
        Self { function, request_id, request, received_at: Instant::now(), note: None }
    }
}

/// What came back from one invocation.
#[derive(Debug)]
pub struct Outcome {
    pub request_id: RequestId,
    pub result: Result<http::Response<Bytes>, PlatformError>,
    /// Time spent running the guest (instantiation included).
    pub duration: Duration,
    /// What the guest wrote to stdout and stderr, bounded.
    pub output: CapturedOutput,
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
