//! Components built by other toolchains than Rust's run unchanged: each
//! imports WASI at its own 0.2.x patch version and more than the proxy world.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::*;

async fn serves(lang: &str, component: std::path::PathBuf) {
    let node = Node::start();
    let scratch = TempDir::new(lang);
    let route = format!("/{lang}/*");
    let manifest = format!(
        "name = \"{lang}-hello\"\nruntime = \"wasm\"\ncomponent = \"app.wasm\"\nenv = {{ GREETING = \"hi\" }}\n[[http]]\nroute = \"{route}\"\n"
    );
    let out = node.deploy(&function_dir(scratch.path(), &manifest, &component));
    eprintln!("{lang}: {out}");
    for _ in 0..3 {
        let r = node.get(&format!("/{lang}/a/b?q=1")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let expected = format!("hi from {} /{lang}/a/b?q=1", if lang == "js" { "javascript" } else { "python" });
        assert_eq!(r.body, expected);
        assert!(r.header("x-nimbus-request-id").is_some());
    }
}

#[tokio::test]
async fn a_javascript_component_from_componentize_js_is_served() {
    serves("js", foreign("js-hello")).await;
}

#[tokio::test]
async fn a_python_component_from_componentize_py_is_served() {
    serves("py", foreign("py-hello")).await;
}
