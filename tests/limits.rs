//! Isolation and limits: every hostile guest gets a typed error and the node
//! keeps serving everyone else.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Method;

/// A node with the probe deployed as `p` at `/*` under `extra` limits, and a
/// well-behaved `canary` at `/canary/*`.
fn node_with_probe(extra: &str, node_args: &[&str]) -> (Node, TempDir) {
    let node = Node::start_with(node_args);
    let scratch = TempDir::new("limits");
    node.deploy_probe(&scratch, "p", &format!("{extra}\n[[http]]\nroute = \"/*\""));
    node.deploy_probe(&scratch, "canary", "[[http]]\nroute = \"/canary/*\"");
    (node, scratch)
}

async fn assert_canary_serves(node: &Node) {
    let r = node.get("/canary/counter").await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"), "the node stopped serving others");
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    let (node, _s) = node_with_probe("", &[]);
    for _ in 0..5 {
        let r = node.get("/counter").await;
        assert_eq!((r.status, r.body.as_str()), (200, "1"), "state leaked between requests");
    }
}

#[tokio::test]
async fn guests_have_no_ambient_authority() {
    let (node, _s) = node_with_probe("env = { ONLY = \"this\", AND = \"that\" }", &[]);
    let env = node.get("/env").await;
    assert_eq!(env.status, 200);
    let mut vars: Vec<&str> = env.body.lines().collect();
    vars.sort();
    assert_eq!(vars, ["AND=that", "ONLY=this"], "the guest saw more than its manifest env");
    let files = node.get("/files").await;
    assert!(files.body.starts_with("denied"), "the guest could list the host filesystem: {}", files.body);
    let fetch = node.get("/fetch").await;
    assert!(fetch.body.starts_with("denied: ") && fetch.body.contains("HttpRequestDenied"), "{}", fetch.body);
    let connect = node.get("/connect").await;
    assert!(connect.body.starts_with("denied"), "the guest opened a socket: {}", connect.body);
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_its_timeout() {
    let (node, _s) = node_with_probe("timeout_ms = 300", &[]);
    let started = Instant::now();
    let r = node.get("/loop").await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.error_code(), "function_timeout");
    eprintln!("loop stopped after {elapsed:?} (timeout_ms = 300)");
    // Not a timing assertion: only that the loop did not run on unchecked.
    assert!(elapsed < Duration::from_secs(10), "the loop was not stopped");
    assert_canary_serves(&node).await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_is_stopped_at_its_timeout() {
    let (node, _s) = node_with_probe("timeout_ms = 200", &[]);
    let r = node.get("/sleep?ms=60000").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "function_timeout");
    assert!(r.json()["error"]["request_id"].is_string());
    assert_canary_serves(&node).await;
}

#[tokio::test]
async fn memory_beyond_memory_mb_is_out_of_memory() {
    let (node, _s) = node_with_probe("memory_mb = 32", &[]);
    let small = node.get("/grow?mb=8").await;
    assert_eq!((small.status, small.body.as_str()), (200, "grew 8"));
    let r = node.get("/grow?mb=64").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.error_code(), "function_out_of_memory");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("memory_mb (32 MiB)"), "{}", r.body);
    assert_canary_serves(&node).await;
}

#[tokio::test]
async fn traps_exits_and_missing_responses_are_crashes() {
    let (node, _s) = node_with_probe("", &[]);
    for path in ["/trap", "/exit", "/noresponse"] {
        let r = node.get(path).await;
        assert_eq!(r.status, 502, "{path}: {}", r.body);
        assert_eq!(r.error_code(), "function_crashed", "{path}");
    }
    let exit = node.get("/exit").await;
    // WASI 0.2's exit carries success or failure only, so exit(3) is status 1.
    assert!(exit.body.contains("exited with status 1 instead of responding"), "{}", exit.body);
    let logs = node.cli_ok(&["logs", "p", "--limit", "10"]);
    assert!(logs.contains("probe was asked to trap"), "the panic message is not in the logs:\n{logs}");
    assert!(logs.contains("502 function_crashed"), "{logs}");
    assert_canary_serves(&node).await;
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let (node, _s) = node_with_probe("", &[]);
    let ok = node.get("/big?bytes=100000").await;
    assert_eq!((ok.status, ok.body.len()), (200, 100_000));
    let r = node.get(&format!("/big?bytes={}", 7 * 1024 * 1024)).await;
    assert_eq!(r.status, 502);
    assert!(r.body.contains("larger than"), "{}", r.body);
}

#[tokio::test]
async fn concurrency_above_max_concurrency_is_throttled() {
    let (node, _s) = node_with_probe("max_concurrency = 2", &[]);
    let mut slow = Vec::new();
    for _ in 0..2 {
        let gateway = node.gateway_client();
        slow.push(tokio::spawn(async move { gateway.request(Method::GET, "/sleep?ms=2000", &[], Bytes::new()).await }));
    }
    let api = node.api_client();
    wait_for(Duration::from_secs(10), "two requests in flight", || async {
        let r = api.request(Method::GET, "/v1/functions/p", &[], Bytes::new()).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["in_flight"] == 2
    })
    .await;
    let third = node.get("/counter").await;
    assert_eq!(third.status, 429);
    assert_eq!(third.error_code(), "throttled");
    assert_eq!(third.header("retry-after"), Some("1"));
    assert_canary_serves(&node).await;
    for s in slow {
        assert_eq!(s.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(node.get("/counter").await.status, 200, "capacity was not given back");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_without_being_read() {
    let (node, _s) = node_with_probe("", &["--max-body-bytes", "1024"]);
    let fits = node.send(Method::POST, "/echo", &[], Bytes::from(vec![b'a'; 1024])).await;
    assert_eq!(fits.status, 200);
    let r = node.send(Method::POST, "/echo", &[], Bytes::from(vec![b'a'; 2048])).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");

    // A client that announces 1 GiB and sends almost nothing is answered at
    // once: the node does not wait for (or read) a body it will refuse.
    use std::io::{Read, Write};
    let addr = node.gateway.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\nabc").unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).expect("no answer before the body was sent");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // The same limit holds for invokes through the control API.
    let out = node.cli(&["invoke", "p", "--data", &"b".repeat(2000)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("payload_too_large"));
    assert_canary_serves(&node).await;
}

#[tokio::test]
async fn hostile_guests_do_not_slow_the_node_to_a_halt() {
    let (node, _s) = node_with_probe("timeout_ms = 1500", &[]);
    // Keep both cores' worth of loops busy, then check others still answer.
    let mut loops = Vec::new();
    for _ in 0..4 {
        let gateway = node.gateway_client();
        loops.push(tokio::spawn(async move { gateway.request(Method::GET, "/loop", &[], Bytes::new()).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        assert_canary_serves(&node).await;
    }
    for l in loops {
        assert_eq!(l.await.unwrap().unwrap().status, 504);
    }
}

#[tokio::test]
async fn a_redeploy_keeps_counting_requests_still_running_on_the_old_version() {
    let (node, scratch) = node_with_probe("max_concurrency = 1", &[]);
    let gateway = node.gateway_client();
    let slow = tokio::spawn(async move { gateway.request(Method::GET, "/sleep?ms=1500", &[], Bytes::new()).await });
    let api = node.api_client();
    wait_for(Duration::from_secs(10), "the slow request to run", || async {
        let r = api.request(Method::GET, "/v1/functions/p", &[], Bytes::new()).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["in_flight"] == 1
    })
    .await;
    node.deploy_probe(&scratch, "p", "max_concurrency = 1\nenv = { VERSION = \"2\" }\n[[http]]\nroute = \"/*\"");
    let r = node.get("/counter").await;
    assert_eq!(r.status, 429, "the old version's request no longer counted: {}", r.body);
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    assert_eq!(node.get("/counter").await.status, 200);
}
