//! Cron schedules: on time, once per tick, across restarts, skipping (not
//! bursting) ticks missed while the node was down.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// Milliseconds since the epoch of an RFC 3339 `...THH:MM:SS.mmmZ` time on
/// the same day as now (the tests run for seconds).
fn ms_of_day(t: &str) -> i64 {
    let h: i64 = t[11..13].parse().unwrap();
    let m: i64 = t[14..16].parse().unwrap();
    let s: i64 = t[17..19].parse().unwrap();
    let ms: i64 = t[20..23].parse().unwrap();
    ((h * 60 + m) * 60 + s) * 1000 + ms
}

fn now_ms_of_day() -> i64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    ms % 86_400_000
}

/// The scheduled times of a function's fired invocations, from the
/// `x-nimbus-scheduled-time` header the echo probe reports back.
async fn fired(node: &Node, function: &str) -> Vec<String> {
    let list = node.api_get(&format!("/v1/functions/{function}/invocations?limit=1000")).await.json();
    let mut times = Vec::new();
    for v in list["invocations"].as_array().unwrap() {
        if v["status"] != "succeeded" {
            continue;
        }
        let result = v["result"].as_str().unwrap();
        let line = result.lines().find(|l| l.starts_with("header:x-nimbus-scheduled-time=")).unwrap();
        times.push(line.split_once('=').unwrap().1.to_string());
    }
    times.sort();
    times
}

#[tokio::test]
async fn schedules_fire_every_tick_once_with_their_payload() {
    if now_ms_of_day() > 86_400_000 - 60_000 {
        eprintln!("SKIPPED: too close to midnight UTC for this test's time arithmetic");
        return;
    }
    let node = Node::start();
    let scratch = TempDir::new("cron");
    node.deploy_probe(&scratch, "ticker", "[[schedule]]\ncron = \"* * * * * *\"");
    node.deploy_probe(
        &scratch,
        "cleanup",
        "[[schedule]]\ncron = \"*/2 * * * * *\"\ntimezone = \"Europe/Berlin\"\npayload = '{\"job\":\"cleanup\"}'",
    );
    let ls = node.cli_ok(&["ls"]);
    assert!(ls.lines().next().unwrap().ends_with("NEXT RUN"), "{ls}");
    let ticker_line = ls.lines().find(|l| l.starts_with("ticker")).unwrap();
    assert!(ticker_line.trim_end().ends_with('Z'), "no next run shown: {ls}");

    wait_for(Duration::from_secs(20), "three ticks", || async { fired(&node, "ticker").await.len() >= 3 }).await;
    let times = fired(&node, "ticker").await;
    let distinct: HashSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a tick fired twice: {times:?}");
    for t in &times {
        assert!(t.ends_with(".000Z"), "not on a whole second: {t}");
    }
    // Ticks run close to their time: the typical one within a second, as
    // promised; a loose bound for any one, as CI machines stall at times.
    let list = node.api_get("/v1/functions/ticker/invocations?limit=1000").await.json();
    let mut delays: Vec<i64> = list["invocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] == "succeeded")
        .map(|v| {
            let scheduled = v["result"]
                .as_str()
                .unwrap()
                .lines()
                .find(|l| l.starts_with("header:x-nimbus-scheduled-time="))
                .unwrap();
            let scheduled = ms_of_day(scheduled.split_once('=').unwrap().1);
            ms_of_day(v["attempts"][0]["started_at"].as_str().unwrap()) - scheduled
        })
        .collect();
    delays.sort();
    eprintln!("ticks started {delays:?} ms after their time");
    assert!(delays.iter().all(|d| *d >= 0), "a tick fired early: {delays:?}");
    assert!(delays[delays.len() / 2] < 1000, "ticks are late: {delays:?}");
    assert!(delays.iter().all(|d| *d < 3000), "a tick was very late: {delays:?}");

    wait_for(Duration::from_secs(20), "the cleanup schedule", || async { !fired(&node, "cleanup").await.is_empty() })
        .await;
    let list = node.api_get("/v1/functions/cleanup/invocations").await.json();
    let result = list["invocations"][0]["result"].as_str().unwrap();
    assert!(result.ends_with("body={\"job\":\"cleanup\"}"), "{result}");
    let default_event = node.api_get("/v1/functions/ticker/invocations?limit=1").await.json();
    let body = default_event["invocations"][0]["payload"].as_str().unwrap();
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["detail-type"], "Scheduled Event");
}

#[tokio::test]
async fn a_restart_neither_repeats_nor_replays_ticks() {
    if now_ms_of_day() > 86_400_000 - 60_000 {
        eprintln!("SKIPPED: too close to midnight UTC for this test's time arithmetic");
        return;
    }
    let scratch = TempDir::new("cron-restart");
    let data = scratch.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.deploy_probe(&scratch, "ticker", "[[schedule]]\ncron = \"* * * * * *\"");
    wait_for(Duration::from_secs(20), "two ticks", || async { fired(&node, "ticker").await.len() >= 2 }).await;
    assert!(node.stop().success());
    let stopped_at = now_ms_of_day();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted_at = now_ms_of_day();
    let node = Node::start_in(&data, &[]);
    let before = fired(&node, "ticker").await.len();
    wait_for(Duration::from_secs(20), "ticks after the restart", || async {
        fired(&node, "ticker").await.len() >= before + 2
    })
    .await;
    let times = fired(&node, "ticker").await;
    let distinct: HashSet<_> = times.iter().collect();
    assert_eq!(distinct.len(), times.len(), "a tick fired twice across the restart: {times:?}");
    let replayed: Vec<_> =
        times.iter().filter(|t| ms_of_day(t) > stopped_at + 1000 && ms_of_day(t) < restarted_at - 1000).collect();
    assert!(replayed.is_empty(), "ticks missed while down were replayed: {replayed:?}");
}
