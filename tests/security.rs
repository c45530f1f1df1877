//! The control plane's protection: tokens, and refusing to expose it bare.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use nimbus_cli::ApiClient;

#[tokio::test]
async fn with_a_token_every_v1_call_needs_it() {
    let node = Node::start_with(&["--token", "s3cret-token"]);
    let anonymous = ApiClient::new(&node.api, None).unwrap();
    for (method, path) in [
        (Method::GET, "/v1/functions"),
        (Method::GET, "/v1/openapi.json"),
        (Method::POST, "/v1/deploy"),
        (Method::POST, "/v1/functions/x/invoke"),
        (Method::GET, "/v1/functions/x/logs"),
        (Method::DELETE, "/v1/functions/x"),
    ] {
        let r = anonymous.request(method.clone(), path, &[], Bytes::new()).await.unwrap();
        assert_eq!(r.status, 401, "{method} {path} without a token");
        assert_eq!(r.platform_error().unwrap().error.code, "unauthorized");
    }
    let wrong = ApiClient::new(&node.api, Some("guess".into())).unwrap();
    assert_eq!(wrong.request(Method::GET, "/v1/functions", &[], Bytes::new()).await.unwrap().status, 401);

    // The right token works, for the API and through the CLI (NIMBUS_TOKEN).
    assert_eq!(node.api_get("/v1/functions").await.status, 200);
    let scratch = TempDir::new("auth");
    node.deploy_probe(&scratch, "secure", "[[http]]\nroute = \"/s\"");
    assert_eq!(node.get("/s").await.status, 200, "the public gateway needs no token");
    // Health and metrics stay open for probes and scrapers.
    let open = ApiClient::new(&node.api, None).unwrap();
    assert_eq!(open.request(Method::GET, "/healthz", &[], Bytes::new()).await.unwrap().status, 200);

    // The CLI without the token fails with a clear reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["ls", "--api", &node.api])
        .env_remove("NIMBUS_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

#[tokio::test]
async fn the_token_never_reaches_the_guest() {
    let node = Node::start_with(&["--token", "t0ken"]);
    let scratch = TempDir::new("leak");
    node.deploy_probe(&scratch, "echo", "");
    let body = node.cli_ok(&["invoke", "echo", "--path", "/echo", "-H", "x-extra: 1"]);
    assert!(body.contains("header:x-extra=1"), "{body}");
    assert!(!body.contains("t0ken") && !body.to_lowercase().contains("authorization"), "{body}");
}

#[test]
fn refuses_a_non_loopback_control_api_without_a_token() {
    let scratch = TempDir::new("exposed");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["server", "--listen", "127.0.0.1:0", "--api-listen", "0.0.0.0:0", "--data-dir"])
        .arg(scratch.path())
        .env_remove("NIMBUS_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("refusing to serve the control API on 0.0.0.0:0 without a token"), "{e}");
}

#[test]
fn cli_reports_an_unreachable_node_in_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args(["ls", "--api", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("cannot reach the nimbus API at http://127.0.0.1:9"), "{e}");
}
