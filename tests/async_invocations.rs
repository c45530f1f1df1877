//! Asynchronous invocations: durable accepts, retries, the dead-letter queue,
//! idempotency, backpressure, destinations, and surviving SIGKILL.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use serde_json::Value;

async fn submit(node: &Node, function: &str, path: &str, body: &str, key: Option<&str>) -> Value {
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push(("idempotency-key".to_string(), k.to_string()));
    }
    let r = node
        .api_client()
        .request(
            Method::POST,
            &format!("/v1/functions/{function}/invocations?path={path}"),
            &headers,
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).unwrap()
}

async fn invocation(node: &Node, id: &str) -> Value {
    node.api_get(&format!("/v1/invocations/{id}")).await.json()
}

async fn wait_status(node: &Node, id: &str, status: &str, timeout: Duration) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let v = invocation(node, id).await;
        if v["status"] == status {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{id} never became {status}: {v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn async_invocations_run_in_the_background_and_report_their_result() {
    let node = Node::start();
    let scratch = TempDir::new("async");
    node.deploy_probe(&scratch, "p", "");
    let out = node.cli_ok(&["invoke", "p", "--async", "--path", "/echo", "--data", "hello async"]);
    let id = out.trim().to_string();
    assert_eq!(id.len(), 32, "{out}");
    let v = wait_status(&node, &id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(v["result_status"], 200);
    let result = v["result"].as_str().unwrap();
    assert!(result.contains("body=hello async"), "{result}");
    assert!(result.contains(&format!("header:x-nimbus-invocation-id={id}")), "{result}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1);

    let shown = node.cli_ok(&["invocation", "get", &id]);
    assert!(shown.contains("status:    succeeded"), "{shown}");
    assert!(shown.contains("attempts:  1"), "{shown}");
    // The attempt is in the function's logs like any invocation.
    let logs = node.cli_ok(&["logs", "p"]);
    assert!(logs.contains(&format!("[nimbus: async invocation {id}, attempt 1]")), "{logs}");
    // --data @file reads the body from a file.
    let file = scratch.path().join("payload.json");
    std::fs::write(&file, "{\"n\":1}").unwrap();
    let id = node.cli_ok(&["invoke", "p", "--async", "--path", "/echo", "--data", &format!("@{}", file.display())]);
    let v = wait_status(&node, id.trim(), "succeeded", Duration::from_secs(30)).await;
    assert!(v["result"].as_str().unwrap().ends_with("body={\"n\":1}"));
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_dead_lettered_and_can_be_redriven() {
    let node = Node::start_with(&["--async-retry-base-ms", "100"]);
    let scratch = TempDir::new("retry");
    node.deploy_probe(&scratch, "flaky", "[async]\nmax_retries = 2");
    let id = submit(&node, "flaky", "/flaky", "job-1", None).await["id"].as_str().unwrap().to_string();
    let dead = wait_status(&node, &id, "dead", Duration::from_secs(30)).await;
    let attempts = dead["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "one attempt and max_retries = 2 retries: {dead:#}");
    for a in attempts {
        assert_eq!(a["outcome"], "function_error");
        assert_eq!(a["status"], 500);
    }
    // Backoff: each retry waited at least half its (doubling) delay.
    let starts: Vec<i64> = attempts
        .iter()
        .map(|a| {
            let t = a["started_at"].as_str().unwrap();
            let ms: i64 = t[20..23].parse().unwrap();
            let secs: i64 = t[17..19].parse::<i64>().unwrap()
                + 60 * t[14..16].parse::<i64>().unwrap()
                + 3600 * t[11..13].parse::<i64>().unwrap();
            secs * 1000 + ms
        })
        .collect();
    assert!(starts[1] - starts[0] >= 50, "{starts:?}");
    assert!(starts[2] - starts[1] >= 100, "{starts:?}");
    assert!(dead["error"].as_str().unwrap().contains("500"));

    let listed = node.cli_ok(&["dlq", "ls", "flaky"]);
    assert!(listed.contains(&id) && listed.contains("payload: job-1") && listed.contains("attempts: 3"), "{listed}");

    // Fix the function, then redrive: the same invocation runs and succeeds.
    node.deploy_probe(&scratch, "flaky", "env = { FIXED = \"1\" }\n[async]\nmax_retries = 2");
    assert_eq!(node.cli_ok(&["dlq", "redrive", "flaky"]), "redrove 1 invocations of flaky\n");
    let done = wait_status(&node, &id, "succeeded", Duration::from_secs(30)).await;
    assert_eq!(done["result"], "fixed");
    assert_eq!(done["attempts"].as_array().unwrap().len(), 4);
    assert!(node.cli_ok(&["dlq", "ls", "flaky"]).contains("is empty"));

    // Purge deletes dead letters.
    let doomed = submit(&node, "flaky", "/trap", "x", None).await["id"].as_str().unwrap().to_string();
    wait_status(&node, &doomed, "dead", Duration::from_secs(30)).await;
    assert_eq!(node.cli_ok(&["dlq", "purge", "flaky", &doomed]), "purged 1 invocations of flaky\n");
    assert_eq!(node.api_get(&format!("/v1/invocations/{doomed}")).await.status, 404);
}

#[tokio::test]
async fn an_idempotency_key_returns_the_same_invocation_and_runs_it_once() {
    let node = Node::start();
    let scratch = TempDir::new("idem");
    node.deploy_probe(&scratch, "once", "");
    let first = submit(&node, "once", "/echo", "a", Some("order-42")).await;
    let second = submit(&node, "once", "/echo", "a", Some("order-42")).await;
    assert_eq!(first["id"], second["id"]);
    assert_eq!((first["duplicate"].as_bool(), second["duplicate"].as_bool()), (Some(false), Some(true)));
    let other = submit(&node, "once", "/echo", "a", Some("order-43")).await;
    assert_ne!(other["id"], first["id"]);
    let out = node.cli_ok(&["invoke", "once", "--async", "--idempotency-key", "order-42", "--data", "a"]);
    assert_eq!(out.trim(), first["id"].as_str().unwrap());
    wait_status(&node, first["id"].as_str().unwrap(), "succeeded", Duration::from_secs(30)).await;
    wait_status(&node, other["id"].as_str().unwrap(), "succeeded", Duration::from_secs(30)).await;
    let page = node.api_get("/v1/functions/once/logs?limit=100").await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2, "ran more than once per key: {page:#}");
}

#[tokio::test]
async fn a_flood_queues_up_within_max_concurrency_and_other_functions_still_get_their_turn() {
    let node = Node::start();
    let scratch = TempDir::new("flood");
    node.deploy_probe(&scratch, "busy", "max_concurrency = 2");
    node.deploy_probe(&scratch, "other", "");
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            submit(&node, "busy", "/sleep?ms=100", &i.to_string(), None).await["id"].as_str().unwrap().to_string(),
        );
    }
    let quick = submit(&node, "other", "/echo", "me too", None).await["id"].as_str().unwrap().to_string();
    let mut peak = 0;
    let api = node.api_client();
    for _ in 0..50 {
        let r = api.request(Method::GET, "/v1/functions/busy", &[], Bytes::new()).await.unwrap();
        let in_flight = serde_json::from_slice::<Value>(&r.body).unwrap()["in_flight"].as_i64().unwrap();
        peak = peak.max(in_flight);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(peak <= 2, "max_concurrency exceeded: {peak} in flight");
    let quick = wait_status(&node, &quick, "succeeded", Duration::from_secs(30)).await;
    let mut last_busy = String::new();
    for id in &ids {
        let v = wait_status(&node, id, "succeeded", Duration::from_secs(60)).await;
        assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "throttling must queue, not fail: {v:#}");
        last_busy = last_busy.max(v["finished_at"].as_str().unwrap().to_string());
    }
    assert!(
        quick["finished_at"].as_str().unwrap() < last_busy.as_str(),
        "the other function waited for the whole flood"
    );
    let metrics = node.api_get("/metrics").await.body;
    assert!(metrics.contains("nimbus_async_queue_depth{function=\"busy\"} 0\n"), "{metrics}");
    assert!(metrics.contains("# TYPE nimbus_async_dlq_size gauge"), "{metrics}");
}

#[tokio::test]
async fn too_old_invocations_go_to_the_dead_letter_queue_unrun() {
    let node = Node::start();
    let scratch = TempDir::new("age");
    node.deploy_probe(&scratch, "slow", "max_concurrency = 1\n[async]\nmax_event_age_s = 1");
    let first = submit(&node, "slow", "/sleep?ms=1500", "1", None).await["id"].as_str().unwrap().to_string();
    let second = submit(&node, "slow", "/sleep?ms=10", "2", None).await["id"].as_str().unwrap().to_string();
    wait_status(&node, &first, "succeeded", Duration::from_secs(30)).await;
    let expired = wait_status(&node, &second, "dead", Duration::from_secs(30)).await;
    assert!(expired["attempts"].as_array().unwrap().is_empty());
    assert!(expired["error"].as_str().unwrap().starts_with("expired"), "{expired:#}");
}

#[tokio::test]
async fn destinations_receive_a_record_of_the_outcome() {
    let node = Node::start_with(&["--async-retry-base-ms", "50"]);
    let scratch = TempDir::new("dest");
    node.deploy_probe(&scratch, "audit", "");
    node.deploy_probe(
        &scratch,
        "worker",
        "[async]\nmax_retries = 0\non_success = \"function:audit\"\non_failure = \"function:audit\"",
    );
    let ok = submit(&node, "worker", "/echo", "good", None).await["id"].as_str().unwrap().to_string();
    let bad = submit(&node, "worker", "/trap", "bad", None).await["id"].as_str().unwrap().to_string();
    wait_status(&node, &ok, "succeeded", Duration::from_secs(30)).await;
    wait_status(&node, &bad, "dead", Duration::from_secs(30)).await;
    wait_for(Duration::from_secs(30), "two destination records", || async {
        node.api_get("/v1/functions/audit/logs?limit=10").await.json()["entries"].as_array().map(|e| e.len()) == Some(2)
    })
    .await;
}

#[tokio::test]
async fn accepted_invocations_survive_sigkill_of_the_node() {
    let scratch = TempDir::new("sigkill");
    let data = scratch.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.deploy_probe(&scratch, "ledger", "max_concurrency = 2");

    // A burst of submits, some of them still in flight when the node dies.
    let api = node.api.clone();
    let burst = tokio::spawn(async move {
        let client = nimbus_cli::ApiClient::new(&api, None).unwrap();
        let mut accepted = Vec::new();
        for i in 0..400 {
            match client
                .request(
                    Method::POST,
                    "/v1/functions/ledger/invocations?path=/sleep%3Fms%3D20",
                    &[],
                    Bytes::from(format!("entry-{i}")),
                )
                .await
            {
                Ok(r) if r.status == 202 => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    accepted.push((v["id"].as_str().unwrap().to_string(), format!("entry-{i}")));
                }
                _ => break,
            }
        }
        accepted
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    node.child.kill().unwrap(); // SIGKILL
    node.child.wait().unwrap();
    let accepted = burst.await.unwrap();
    assert!(accepted.len() > 10, "too few accepted before the kill: {}", accepted.len());

    let node = Node::start_in(&data, &[]);
    let mut seen = HashSet::new();
    for (id, payload) in &accepted {
        let v = wait_status(&node, id, "succeeded", Duration::from_secs(120)).await;
        assert_eq!(v["payload"], payload.as_str());
        assert_eq!(v["result"].as_str().unwrap(), "slept 20 version=");
        seen.insert(id.clone());
    }
    assert_eq!(seen.len(), accepted.len(), "an accepted invocation went missing");
}

#[tokio::test]
async fn a_graceful_stop_lets_running_attempts_finish_and_record_their_outcome() {
    let scratch = TempDir::new("drain");
    let data = scratch.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.deploy_probe(&scratch, "slow", "");
    let id = submit(&node, "slow", "/sleep?ms=1000", "x", None).await["id"].as_str().unwrap().to_string();
    wait_status(&node, &id, "running", Duration::from_secs(30)).await;
    assert!(node.stop().success());
    let node = Node::start_in(&data, &[]);
    let v = invocation(&node, &id).await;
    assert_eq!(v["status"], "succeeded", "{v:#}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "the attempt ran again: {v:#}");
}
