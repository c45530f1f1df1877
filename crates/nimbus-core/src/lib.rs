//! Domain types shared by every nimbus crate: validated names, the resolved
//! function specification, the `Invocation` that travels from a trigger to a
//! runtime, the `Outcome` that comes back, and the platform's typed errors.
//!
//! This crate knows nothing of wasmtime, HTTP servers, storage or the manifest
//! file format: it is plain data, so every other crate can depend on it.

mod error;
mod invocation;
mod name;
mod request_id;
mod spec;

pub use error::{ERROR_CODE_HEADER, ErrorCode, PlatformError, RETRY_AFTER_SECS, ReportedError};
pub use invocation::{Body, CapturedOutput, Invocation, MAX_BUFFERED_STREAM_BYTES, Outcome, Trigger};
pub use name::{FunctionName, InvalidName};
pub use request_id::RequestId;
pub use spec::{
    AsyncConfig, Destination, FunctionSpec, HttpRoute, Limits, ProcessSpec, QueueBinding, RoutePattern, Runtime,
    ScheduleSpec,
};

/// The header every gateway response carries, and every guest receives.
pub const REQUEST_ID_HEADER: &str = "x-nimbus-request-id";
