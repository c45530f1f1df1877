//! Cron schedules: every `[[schedule]]` of every deployed function fires an
//! asynchronous invocation at each tick, durably and at most once per tick.
//!
//! Each fire is submitted with the idempotency key
//! `schedule:<function>:<cron>@<zone>:<tick>` and recorded as the schedule's
//! last tick, so a restart never fires a tick twice. Ticks missed while the
//! node was down are skipped, not replayed in a burst, and the skip is logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nimbus_core::{FunctionName, ScheduleSpec};
use nimbus_cron::CronSchedule;
use nimbus_scheduler::FunctionTable;
use nimbus_store::{StoredRequest, format_rfc3339, now_ms};
use tokio_util::sync::CancellationToken;

use crate::AsyncInvoker;

/// Identifies a schedule of a function across deploys and restarts.
fn schedule_key(s: &ScheduleSpec) -> String {
    format!("{}@{}", s.cron, s.timezone)
}

/// The next time `spec` fires after now, for `nimbus ls`.
pub fn next_fire_ms(spec: &ScheduleSpec) -> Option<i64> {
    CronSchedule::parse(&spec.cron, &spec.timezone).ok()?.next_after(now_ms())
}

struct Entry {
    function: FunctionName,
    spec: ScheduleSpec,
    cron: CronSchedule,
    next_ms: i64,
}

pub struct ScheduleRunner {
    invoker: Arc<AsyncInvoker>,
    scheduler: Arc<nimbus_scheduler::Scheduler>,
}

impl ScheduleRunner {
    pub fn new(invoker: Arc<AsyncInvoker>, scheduler: Arc<nimbus_scheduler::Scheduler>) -> Self {
        Self { invoker, scheduler }
    }

    /// Fires schedules until `shutdown`. Picks up deploys and removals within
    /// a second.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut table: Option<Arc<FunctionTable>> = None;
        let mut entries: HashMap<(FunctionName, String), Entry> = HashMap::new();
        loop {
            let current = self.scheduler.table();
            if !table.as_ref().is_some_and(|t| Arc::ptr_eq(t, &current)) {
                entries = self.rebuild(&current, std::mem::take(&mut entries)).await;
                table = Some(current);
            }
            let now = now_ms();
            let mut due: Vec<(FunctionName, String)> =
                entries.iter().filter(|(_, e)| e.next_ms <= now).map(|(k, _)| k.clone()).collect();
            due.sort();
            for key in due {
                if let Some(entry) = entries.get_mut(&key) {
                    self.fire(entry).await;
                }
            }
            let next = entries.values().map(|e| e.next_ms).min();
            let wait = next.map(|t| (t - now_ms()).clamp(0, 1000)).unwrap_or(1000) as u64;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
            }
        }
    }

    async fn rebuild(
        &self,
        table: &FunctionTable,
        mut old: HashMap<(FunctionName, String), Entry>,
    ) -> HashMap<(FunctionName, String), Entry> {
        let mut entries = HashMap::new();
        for function in table.functions() {
            for spec in &function.record.spec.schedules {
                let key = (function.name().clone(), schedule_key(spec));
                if let Some(mut kept) = old.remove(&key) {
                    kept.spec = spec.clone();
                    entries.insert(key, kept);
                    continue;
                }
                let Ok(cron) = CronSchedule::parse(&spec.cron, &spec.timezone) else { continue };
                let now = now_ms();
                let queue = self.invoker.queue().clone();
                let (f, k) = (key.0.to_string(), key.1.clone());
                let last = tokio::task::spawn_blocking(move || queue.last_tick(&f, &k))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                if let Some(last) = last {
                    let missed = count_ticks(&cron, last, now);
                    if missed > 0 {
                        tracing::warn!(
                            function = %function.name(),
                            schedule = %key.1,
                            "skipped {missed} tick(s) missed while the node was down (last fired {})",
                            format_rfc3339(last)
                        );
                    }
                }
                // A tick due this very millisecond is not lost to start-up.
                let Some(next_ms) = cron.next_after(now - 1) else { continue };
                entries.insert(key, Entry { function: function.name().clone(), spec: spec.clone(), cron, next_ms });
            }
        }
        entries
    }

    async fn fire(&self, entry: &mut Entry) {
        let tick = entry.next_ms;
        let key = schedule_key(&entry.spec);
        let body = entry.spec.payload.clone().unwrap_or_else(|| {
            serde_json::json!({
                "version": "0",
                "id": format!("{}:{key}:{tick}", entry.function),
                "detail-type": "Scheduled Event",
                "source": "nimbus.schedule",
                "time": format_rfc3339(tick),
                "resources": [format!("{}:{key}", entry.function)],
                "detail": {},
            })
            .to_string()
        });
        let request = StoredRequest {
            method: "POST".into(),
            path: default_path(&self.scheduler, &entry.function),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-nimbus-schedule".into(), key.clone()),
                ("x-nimbus-scheduled-time".into(), format_rfc3339(tick)),
            ],
            body: body.into_bytes(),
        };
        let idempotency = format!("schedule:{}:{key}:{tick}", entry.function);
        match self.invoker.submit(&entry.function, request, Some(idempotency)).await {
            Ok(_) => {
                let queue = self.invoker.queue().clone();
                let (f, k) = (entry.function.to_string(), key.clone());
                let _ = tokio::task::spawn_blocking(move || queue.set_last_tick(&f, &k, tick)).await;
            }
            Err(e) => tracing::error!(function = %entry.function, schedule = %key, "cannot fire: {e}"),
        }
        // The next tick after now: if firing was late, intermediate ticks are skipped.
        entry.next_ms = entry.cron.next_after(tick.max(now_ms() - 1)).unwrap_or(i64::MAX);
    }
}

fn default_path(scheduler: &nimbus_scheduler::Scheduler, function: &FunctionName) -> String {
    scheduler.table().get(function).map(|f| f.record.spec.default_path()).unwrap_or_else(|| "/".to_owned())
}

/// Ticks strictly after `from` and up to `to`, counted up to a bound.
fn count_ticks(cron: &CronSchedule, from: i64, to: i64) -> u64 {
    let mut n = 0;
    let mut t = from;
    while let Some(next) = cron.next_after(t) {
        if next > to || n >= 100_000 {
            break;
        }
        n += 1;
        t = next;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_ticks_are_counted() {
        let cron = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(count_ticks(&cron, 0, 10_000), 10);
        assert_eq!(count_ticks(&cron, 0, 999), 0);
    }
}
