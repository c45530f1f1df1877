//! Built-in queues: batches, at-least-once delivery, visibility timeout and
//! redelivery, dead letters after max_receive, partial batch failure, and
//! messages sent by API, CLI and destinations.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;
use serde_json::Value;

async fn send(node: &Node, queue: &str, body: &str) {
    let r = node
        .api_client()
        .request(Method::POST, &format!("/v1/queues/{queue}/messages"), &[], Bytes::from(body.to_string()))
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
}

async fn queue(node: &Node, name: &str) -> Value {
    let list = node.api_get("/v1/queues").await.json();
    list["queues"].as_array().unwrap().iter().find(|q| q["name"] == name).cloned().unwrap_or(Value::Null)
}

async fn log_entries(node: &Node, function: &str) -> Vec<Value> {
    node.api_get(&format!("/v1/functions/{function}/logs?limit=1000")).await.json()["entries"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn messages_are_delivered_in_batches_at_least_once() {
    let node = Node::start();
    let scratch = TempDir::new("queue");
    node.deploy_probe(
        &scratch,
        "consumer",
        "[[http]]\nroute = \"/print\"\n[[queue]]\nname = \"jobs\"\nbatch_size = 10\nmax_concurrency = 2",
    );
    for i in 0..25 {
        send(&node, "jobs", &format!("msg-{i}")).await;
    }
    let id = node.cli_ok(&["queue", "send", "jobs", "--data", "msg-cli"]);
    assert!(!id.trim().is_empty());
    wait_for(Duration::from_secs(30), "the queue to drain", || async {
        let q = queue(&node, "jobs").await;
        q["ready"] == 0 && q["in_flight"] == 0
    })
    .await;
    let entries = log_entries(&node, "consumer").await;
    let output: String = entries.iter().map(|e| e["output"].as_str().unwrap()).collect();
    for i in 0..25 {
        assert!(output.contains(&format!("\"body\":\"msg-{i}\"")), "msg-{i} never delivered");
    }
    assert!(output.contains("\"body\":\"msg-cli\""));
    for e in &entries {
        let records = e["output"].as_str().unwrap().matches("\"messageId\"").count();
        assert!((1..=10).contains(&records), "a batch of {records}");
        assert!(e["output"].as_str().unwrap().starts_with("[nimbus: queue jobs: batch of"));
    }
    let ls = node.cli_ok(&["queue", "ls"]);
    assert!(ls.lines().any(|l| l.starts_with("jobs") && l.trim_end().ends_with("consumer")), "{ls}");
    let metrics = node.api_get("/metrics").await.body;
    assert!(metrics.contains("nimbus_queue_depth{queue=\"jobs\"} 0\n"), "{metrics}");
}

#[tokio::test]
async fn failed_batches_come_back_after_the_visibility_timeout_then_go_to_the_dlq() {
    let node = Node::start();
    let scratch = TempDir::new("redeliver");
    node.deploy_probe(
        &scratch,
        "failing",
        "[[http]]\nroute = \"/flaky\"\n[[queue]]\nname = \"work\"\nvisibility_timeout_s = 1\nmax_receive = 2",
    );
    send(&node, "work", "payload-1").await;
    wait_for(Duration::from_secs(30), "a dead letter", || async { queue(&node, "work").await["dead"] == 1 }).await;
    let dead = node.api_get("/v1/queues/work/dlq").await.json();
    let m = &dead["messages"][0];
    assert_eq!((m["body"].as_str(), m["receive_count"].as_u64()), (Some("payload-1"), Some(2)));
    assert!(m["error"].as_str().unwrap().contains("500"), "{m}");
    let entries = log_entries(&node, "failing").await;
    assert_eq!(entries.len(), 2, "delivered {} times", entries.len());
    let t = |e: &Value| {
        let s = e["time"].as_str().unwrap();
        s[17..19].parse::<i64>().unwrap() * 1000
            + s[20..23].parse::<i64>().unwrap()
            + s[14..16].parse::<i64>().unwrap() * 60_000
    };
    assert!(t(&entries[1]) - t(&entries[0]) >= 900, "redelivered before the visibility timeout");

    let listed = node.cli_ok(&["queue", "dlq", "work"]);
    assert!(listed.contains("received 2 times") && listed.contains("body: payload-1"), "{listed}");
    assert_eq!(node.cli_ok(&["queue", "dlq", "work", "--redrive"]), "redrove 1 messages of work\n");
    wait_for(Duration::from_secs(30), "the redriven message to be delivered", || async {
        log_entries(&node, "failing").await.len() >= 3
    })
    .await;
}

#[tokio::test]
async fn partial_batch_failures_bring_back_only_the_failed_items() {
    let node = Node::start();
    let scratch = TempDir::new("partial");
    // Messages wait until a consumer exists, so they arrive in one batch.
    for i in 0..3 {
        send(&node, "parts", &format!("m{i}")).await;
    }
    assert_eq!(queue(&node, "parts").await["ready"], 3);
    node.deploy_probe(
        &scratch,
        "picky",
        "[[http]]\nroute = \"/fail-first\"\n[[queue]]\nname = \"parts\"\nbatch_size = 5\nvisibility_timeout_s = 1\nmax_receive = 2",
    );
    wait_for(Duration::from_secs(30), "the failed item in the DLQ", || async {
        let q = queue(&node, "parts").await;
        q["dead"] == 1 && q["ready"] == 0 && q["in_flight"] == 0
    })
    .await;
    let dead = node.api_get("/v1/queues/parts/dlq").await.json();
    assert_eq!(dead["messages"][0]["body"], "m0");
    assert!(dead["messages"][0]["error"].as_str().unwrap().contains("batchItemFailures"));
    let entries = log_entries(&node, "picky").await;
    assert!(entries[0]["output"].as_str().unwrap().starts_with("[nimbus: queue parts: batch of 3"), "{:?}", entries[0]);
}

#[tokio::test]
async fn destinations_can_send_to_a_queue() {
    let node = Node::start();
    let scratch = TempDir::new("dest-queue");
    node.deploy_probe(&scratch, "producer", "[async]\non_success = \"queue:results\"");
    let id = node.cli_ok(&["invoke", "producer", "--async", "--path", "/echo", "--data", "x"]);
    wait_for(Duration::from_secs(30), "a record in the results queue", || async {
        queue(&node, "results").await["ready"] == 1
    })
    .await;
    let r = node.api_get(&format!("/v1/invocations/{}", id.trim())).await.json();
    assert_eq!(r["status"], "succeeded");
}
