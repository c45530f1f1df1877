//! Deploying, serving, replacing, removing and restoring functions.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Method;

#[tokio::test]
async fn readme_flow_deploy_curl_invoke_ls_logs_rm() {
    let node = Node::start();
    let scratch = TempDir::new("readme");
    let hello = function_dir(
        scratch.path(),
        "name = \"hello\"\nruntime = \"wasm\"\ncomponent = \"app.wasm\"\nenv = { GREETING = \"hi\" }\n[[http]]\nroute = \"/hello\"\nmethods = [\"GET\", \"POST\"]\n",
        &example("hello"),
    );
    let out = node.deploy(&hello);
    assert!(out.starts_with("deployed hello version 1"), "{out}");

    let r = node.get("/hello").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "hi from nimbus\n");
    let request_id = r.header("x-nimbus-request-id").expect("request id header").to_string();
    assert_eq!(request_id.len(), 32);

    let invoke = node.cli(&["invoke", "hello", "--data", "x"]);
    assert!(invoke.status.success(), "{}", String::from_utf8_lossy(&invoke.stderr));
    assert_eq!(String::from_utf8_lossy(&invoke.stdout), "hi from nimbus\n");
    let stderr = String::from_utf8_lossy(&invoke.stderr);
    assert!(stderr.contains("status: 200") && stderr.contains("request-id: "), "{stderr}");

    let ls = node.cli_ok(&["ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines.len(), 2, "{ls}");
    assert!(lines[0].starts_with("NAME") && lines[0].contains("ROUTES") && lines[0].contains("DEPLOYED"), "{ls}");
    assert!(lines[1].starts_with("hello  wasm     GET,POST /hello  1"), "{ls}");

    let logs = node.cli_ok(&["logs", "hello"]);
    assert!(logs.contains(&request_id), "{logs}");
    assert!(logs.contains("200 ok"), "{logs}");
    assert!(logs.contains("  | greeting a request for /hello"), "{logs}");

    assert_eq!(node.cli_ok(&["rm", "hello"]), "removed hello\n");
    let gone = node.get("/hello").await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_code(), "not_found");
    assert!(!node.cli(&["rm", "hello"]).status.success());
    assert_eq!(node.cli_ok(&["ls"]).lines().count(), 1);
}

#[tokio::test]
async fn request_reaches_the_guest_unchanged_with_the_request_id() {
    let node = Node::start();
    let scratch = TempDir::new("echo");
    node.deploy_probe(&scratch, "echo", "[[http]]\nroute = \"/api/*\"");
    let r =
        node.send(Method::PUT, "/api/items/7?x=1&y=two", &[("x-custom", "abc")], Bytes::from_static(b"payload")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("method=PUT\n"), "{}", r.body);
    assert!(r.body.contains("path=/api/items/7?x=1&y=two\n"), "{}", r.body);
    assert!(r.body.contains("header:x-custom=abc\n"), "{}", r.body);
    assert!(r.body.ends_with("body=payload"), "{}", r.body);
    let id = r.header("x-nimbus-request-id").expect("request id");
    assert!(r.body.contains(&format!("header:x-nimbus-request-id={id}\n")), "{}", r.body);
    assert_eq!(r.header("x-probe"), Some("1"));

    // The prefix itself matches; a sibling path does not.
    assert_eq!(node.get("/api").await.status, 200);
    let miss = node.get("/apix").await;
    assert_eq!(miss.status, 404);
    assert_eq!(miss.error_code(), "not_found");
    assert!(miss.header("x-nimbus-request-id").is_some());
}

#[tokio::test]
async fn methods_outside_the_route_are_refused() {
    let node = Node::start();
    let scratch = TempDir::new("methods");
    node.deploy_probe(&scratch, "getonly", "[[http]]\nroute = \"/g\"\nmethods = [\"GET\"]");
    assert_eq!(node.get("/g").await.status, 200);
    let r = node.send(Method::DELETE, "/g", &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.error_code(), "method_not_allowed");
}

#[tokio::test]
async fn bad_deploys_are_refused_with_reasons_and_change_nothing() {
    let node = Node::start();
    let scratch = TempDir::new("bad");
    node.deploy_probe(&scratch, "good", "env = { VERSION = \"1\" }\n[[http]]\nroute = \"/good\"");
    let before = node.cli_ok(&["ls"]);

    let attempt = std::cell::Cell::new(0);
    let refuse = |manifest: &str, wasm: &[u8]| {
        attempt.set(attempt.get() + 1);
        let dir = scratch.path().join(format!("bad{}", attempt.get()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("nimbus.toml"), manifest).unwrap();
        std::fs::write(dir.join("app.wasm"), wasm).unwrap();
        let out = node.cli(&["deploy", dir.to_str().unwrap()]);
        assert!(!out.status.success(), "deploy of {manifest:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Replacing `good` with something broken must leave the old one serving.
    let good = probe_manifest("good", "[[http]]\nroute = \"/good\"");

    let e = refuse(&good, b"this is not wasm at all");
    assert!(e.contains("invalid_component") && e.contains("not a WebAssembly file"), "{e}");

    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let e = refuse(&good, &core);
    assert!(e.contains("core WebAssembly module, not a component") && e.contains("wasm32-wasip2"), "{e}");

    let no_export = wat::parse_str("(component)").unwrap();
    let e = refuse(&good, &no_export);
    assert!(e.contains("does not export wasi:http/incoming-handler"), "{e}");

    let foreign = wat::parse_str("(component (import \"acme:db/query@1.0.0\" (instance)))").unwrap();
    let e = refuse(&good, &foreign);
    assert!(e.contains("acme:db/query@1.0.0") && e.contains("nimbus does not provide"), "{e}");

    let e = refuse(&good, &std::fs::read(guest("probe")).unwrap()[..100]);
    assert!(e.contains("invalid_component"), "{e}");

    let e = refuse("name = \"good\"\nruntime = \"wasm\"\ncomponent = \"app.wasm\"\nmemory_mb = 0\n", b"");
    assert!(e.contains("nimbus.toml:4: memory_mb = 0: must be between 16 and 4096"), "{e}");

    let e = refuse("name = \"good\"\nruntime = \"wasm\"\ncomponent = \"app.wasm\"\ncolour = \"blue\"\n", b"");
    assert!(e.contains("nimbus.toml:4: unknown field `colour`"), "{e}");

    // Another function may not take a route that is already owned.
    let thief = probe_manifest("thief", "[[http]]\nroute = \"/good\"");
    let e = refuse(&thief, &std::fs::read(guest("probe")).unwrap());
    assert!(e.contains("conflict") && e.contains("route /good is already served by function good"), "{e}");

    let e = refuse(&probe_manifest("missing", "component2 = 1"), b"");
    assert!(e.contains("unknown field `component2`"), "{e}");

    assert_eq!(node.cli_ok(&["ls"]), before, "a refused deploy changed the function list");
    let r = node.get("/good").await;
    assert_eq!(r.status, 200);
    assert_eq!(node.get("/thief").await.status, 404);
}

#[tokio::test]
async fn missing_component_file_is_reported_by_the_cli() {
    let node = Node::start();
    let scratch = TempDir::new("missing");
    let dir = scratch.path().join("f");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nimbus.toml"), probe_manifest("f", "")).unwrap();
    let out = node.cli(&["deploy", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("cannot read the component") && e.contains("app.wasm"), "{e}");
}

#[tokio::test]
async fn redeploy_is_atomic_requests_in_flight_finish_on_old_code() {
    let node = Node::start();
    let scratch = TempDir::new("redeploy");
    node.deploy_probe(&scratch, "f", "env = { VERSION = \"1\" }\n[[http]]\nroute = \"/*\"");

    let gateway = node.gateway_client();
    let slow = tokio::spawn(async move { gateway.request(Method::GET, "/sleep?ms=1500", &[], Bytes::new()).await });
    // Wait until the slow request is running on version 1.
    let client = node.api_client();
    wait_for(Duration::from_secs(10), "the slow request to start", || async {
        let r = client.request(Method::GET, "/v1/functions/f", &[], Bytes::new()).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["in_flight"] == 1
    })
    .await;

    let out = node.deploy(&function_dir(
        scratch.path(),
        &probe_manifest("f", "env = { VERSION = \"2\" }\n[[http]]\nroute = \"/*\""),
        &guest("probe"),
    ));
    assert!(out.starts_with("deployed f version 2"), "{out}");
    // New requests see the new code at once...
    let now = node.get("/env").await;
    assert!(now.body.contains("VERSION=2"), "{}", now.body);
    // ...while the one in flight finishes, successfully, on the old.
    let old = slow.await.unwrap().unwrap();
    assert_eq!(old.status, 200);
    assert_eq!(String::from_utf8_lossy(&old.body), "slept 1500 version=1");
}

#[tokio::test]
async fn functions_survive_a_restart_without_recompiling() {
    let scratch = TempDir::new("restart");
    let data = scratch.path().join("data");
    let mut node = Node::start_in(&data, &[]);
    node.deploy_probe(&scratch, "keep", "env = { VERSION = \"7\" }\n[[http]]\nroute = \"/keep/*\"");
    node.deploy_probe(&scratch, "other", "[[http]]\nroute = \"/other\"");
    assert_eq!(node.get("/keep/sleep?ms=1").await.body, "slept 1 version=7");
    assert!(node.stop().success(), "graceful stop failed");

    let node = Node::start_in(&data, &[]);
    assert!(node.stdout_lines.iter().any(|l| l.contains("2 functions restored")), "{:?}", node.stdout_lines);
    assert_eq!(node.get("/keep/sleep?ms=1").await.body, "slept 1 version=7");
    assert_eq!(node.get("/other").await.status, 200);
    let metrics = node.api_get("/metrics").await.body;
    assert!(metrics.contains("nimbus_compile_duration_seconds_count 0\n"), "recompiled after restart:\n{metrics}");
    assert!(metrics.contains("nimbus_artifact_load_duration_seconds_count 2\n"), "{metrics}");
    let ls = node.cli_ok(&["ls"]);
    assert!(ls.contains("keep ") && ls.contains("other "), "{ls}");
}

#[tokio::test]
async fn deploying_the_same_component_again_reuses_the_compiled_artifact() {
    let node = Node::start();
    let scratch = TempDir::new("reuse");
    let first = node.deploy(&function_dir(scratch.path(), &probe_manifest("a", ""), &guest("probe")));
    assert!(first.contains("(compiled in"), "{first}");
    let second = node.deploy(&function_dir(scratch.path(), &probe_manifest("b", ""), &guest("probe")));
    assert!(second.contains("reused the compiled artifact"), "{second}");
    let r = node
        .api_client()
        .request(Method::POST, "/v1/functions/b/invoke?method=GET&path=/counter", &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"1");
}

#[tokio::test]
async fn documented_curl_deploy_with_a_plain_tar_works() {
    // The example in docs/api.md, run as written (with this node's ports).
    let node = Node::start();
    let scratch = TempDir::new("curl");
    let dir = function_dir(
        scratch.path(),
        "name = \"hello\"\nruntime = \"wasm\"\ncomponent = \"hello.wasm\"\n[[http]]\nroute = \"/hello\"\n",
        &example("hello"),
    );
    std::fs::rename(dir.join("app.wasm"), dir.join("hello.wasm")).unwrap();
    let tar = scratch.path().join("hello.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .args(["nimbus.toml", "hello.wasm"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = std::process::Command::new("curl")
        .args(["-sS", "--data-binary"])
        .arg(format!("@{}", tar.display()))
        .args(["-H", "content-type: application/x-tar"])
        .arg(format!("{}/v1/deploy", node.api))
        .output()
        .expect("curl is needed for this test");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["function"]["name"], "hello", "{answer}");
    assert_eq!(answer["compiled"], true);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-X", "POST"])
        .arg(format!("{}/v1/functions/hello/invoke?method=GET", node.api))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from nimbus\n");
}
