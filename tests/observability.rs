//! Logs, metrics and the API description.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[tokio::test]
async fn guest_output_is_captured_per_invocation_and_bounded() {
    let node = Node::start();
    let scratch = TempDir::new("logs");
    node.deploy_probe(&scratch, "chatty", "timeout_ms = 60000\n[[http]]\nroute = \"/*\"");
    let r = node.get("/log?lines=3").await;
    let id = r.header("x-nimbus-request-id").unwrap().to_string();
    let logs = node.cli_ok(&["logs", "chatty", "--limit", "1"]);
    assert!(logs.contains(&id), "{logs}");
    for i in 0..3 {
        assert!(logs.contains(&format!("  | stdout line {i}\n")), "{logs}");
        assert!(logs.contains(&format!("  | stderr line {i}\n")), "{logs}");
    }

    // 2 x 6,000 lines (~160 KiB) is more than the 64 KiB kept: the guest
    // still succeeds, and the log says what was dropped.
    let flood = node.get("/log?lines=6000").await;
    assert_eq!((flood.status, flood.body.as_str()), (200, "logged"));
    let page = node.api_get("/v1/functions/chatty/logs?limit=1").await.json();
    let output = page["entries"][0]["output"].as_str().unwrap();
    assert!(output.len() < 70 * 1024, "output was not bounded: {} bytes", output.len());
    assert!(output.contains("[nimbus: output truncated"), "no truncation marker");
    assert!(output.contains("bytes dropped]"));
}

#[tokio::test]
async fn logs_follow_streams_new_invocations() {
    let node = Node::start();
    let scratch = TempDir::new("follow");
    node.deploy_probe(&scratch, "f", "[[http]]\nroute = \"/*\"");
    node.get("/log?lines=1").await;

    let mut follow = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["logs", "f", "--follow", "--limit", "1"])
        .env("NIMBUS_API", &node.api)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The existing entry first...
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("no existing entry printed");
    assert!(first.contains("200 ok"), "{first}");
    // ...then one that happens while following.
    let r = node.get("/sleep?ms=1").await;
    let id = r.header("x-nimbus-request-id").unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("new entry not streamed");
        if line.contains(&id) {
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
}

#[tokio::test]
async fn metrics_expose_invocations_durations_in_flight_and_timings() {
    let node = Node::start();
    let scratch = TempDir::new("metrics");
    node.deploy_probe(&scratch, "m", "timeout_ms = 200\n[[http]]\nroute = \"/*\"");
    for _ in 0..3 {
        assert_eq!(node.get("/counter").await.status, 200);
    }
    assert_eq!(node.get("/loop").await.status, 504);
    assert_eq!(node.get("/nowhere-routed").await.status, 200); // /* catches all
    let r = node.api_get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let m = r.body;
    assert!(m.contains("nimbus_invocations_total{function=\"m\",outcome=\"ok\"} 4\n"), "{m}");
    assert!(m.contains("nimbus_invocations_total{function=\"m\",outcome=\"function_timeout\"} 1\n"), "{m}");
    assert!(m.contains("# TYPE nimbus_invocation_duration_seconds histogram"), "{m}");
    assert!(m.contains("nimbus_invocation_duration_seconds_count{function=\"m\"} 5\n"), "{m}");
    assert!(m.contains("nimbus_invocations_in_flight{function=\"m\"} 0\n"), "{m}");
    assert!(m.contains("nimbus_instantiation_duration_seconds_count 5\n"), "{m}");
    assert!(m.contains("nimbus_compile_duration_seconds_count 1\n"), "{m}");
    assert!(m.contains("nimbus_functions_deployed 1\n"), "{m}");
}

#[tokio::test]
async fn health_and_openapi_are_served() {
    let node = Node::start();
    let h = node.api_get("/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let doc = node.api_get("/v1/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/deploy"]["post"].is_object());
    let unknown = node.api_get("/v1/nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error_code(), "not_found");
}
