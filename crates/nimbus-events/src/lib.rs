//! Event sources and asynchronous delivery for nimbus: the ways a function is
//! invoked other than by an HTTP request waiting for the answer.
//!
//! - [`AsyncInvoker`]: asynchronous invocations, accepted durably, run by a
//!   dispatcher within each function's `max_concurrency`, retried with
//!   backoff, dead-lettered, and reported to destinations.
//! - [`CronSchedule`]: a cron expression in a time zone that computes its
//!   next fire time (the engine of `[[schedule]]`, not yet wired to fire).
//!
//! It knows nothing of wasmtime or HTTP servers: it hands invocations to the
//! scheduler and keeps its state in the store.

mod async_invoke;
pub mod cron;

pub use async_invoke::{AsyncInvoker, RetryPolicy, SubmitResult};
pub use cron::{CronError, CronSchedule};
