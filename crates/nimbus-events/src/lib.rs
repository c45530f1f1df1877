//! Event sources and asynchronous delivery for nimbus: the ways a function is
//! invoked other than by an HTTP request waiting for the answer.
//!
//! - [`AsyncInvoker`]: asynchronous invocations, accepted durably, run by a
//!   dispatcher within each function's `max_concurrency`, retried with
//!   backoff, dead-lettered, and reported to destinations.
//! - [`ScheduleRunner`]: fires each `[[schedule]]` as an asynchronous
//!   invocation, once per tick, across restarts.
//! - [`QueueConsumers`]: delivers built-in queues' messages to the functions
//!   that consume them, in batches, at least once.
//!
//! It knows nothing of wasmtime or HTTP servers: it hands invocations to the
//! scheduler and keeps its state in the store.

mod async_invoke;
mod queues;
mod schedules;

pub use async_invoke::{AsyncInvoker, RetryPolicy, SubmitResult};
pub use nimbus_cron::{CronError, CronSchedule};
pub use queues::QueueConsumers;
pub use schedules::{ScheduleRunner, next_fire_ms};
