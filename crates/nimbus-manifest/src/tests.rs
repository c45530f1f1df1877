use super::*;

fn err(source: &str) -> String {
    parse(source, "nimbus.toml").expect_err("manifest should be rejected").to_string()
}

#[test]
fn full_manifest_resolves_with_values() {
    let spec = parse(
        r#"
name = "hello"
runtime = "wasm"
component = "hello.wasm"
memory_mb = 64
timeout_ms = 500
max_concurrency = 7
env = { GREETING = "hi" }

[[http]]
route = "/hello"
methods = ["get", "POST"]

[[http]]
route = "/api/*"
"#,
        "nimbus.toml",
    )
    .unwrap();
    assert_eq!(spec.name.as_str(), "hello");
    assert_eq!(spec.runtime, Runtime::Wasm { component: "hello.wasm".into() });
    assert_eq!(spec.limits, Limits { memory_mb: 64, timeout_ms: 500, max_concurrency: 7 });
    assert_eq!(spec.env.get("GREETING").map(String::as_str), Some("hi"));
    assert_eq!(spec.routes.len(), 2);
    assert_eq!(spec.routes[0].methods, Some(vec!["GET".to_string(), "POST".to_string()]));
    assert_eq!(spec.routes[1].route, RoutePattern::Prefix("/api".into()));
}

#[test]
fn defaults_are_filled_in() {
    let spec = parse("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n", "nimbus.toml").unwrap();
    assert_eq!(spec.limits, Limits::default());
    assert!(spec.env.is_empty());
    assert!(spec.routes.is_empty());
}

#[test]
fn golden_out_of_range_value_names_line_and_range() {
    let source = "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n\n\n\nmemory_mb = 0\n";
    assert_eq!(err(source), "nimbus.toml:7: memory_mb = 0: must be between 16 and 4096");
}

#[test]
fn golden_unknown_key_is_an_error() {
    let source = "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\nmemroy_mb = 64\n";
    let e = err(source);
    assert!(e.starts_with("nimbus.toml:4: unknown field `memroy_mb`"), "{e}");
    assert!(e.ends_with("remove it or check its spelling"), "{e}");
}

#[test]
fn golden_bad_name_and_route_are_all_reported() {
    let source = "name = \"Hello\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n[[http]]\nroute = \"hello\"\n";
    assert_eq!(
        err(source),
        "nimbus.toml:1: name: invalid function name \"Hello\": use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter\n\
         nimbus.toml:5: route \"hello\" must start with '/', e.g. \"/hello\""
    );
}

#[test]
fn golden_missing_component_and_unknown_runtime() {
    assert_eq!(
        err("name = \"a\"\nruntime = \"wasm\"\n"),
        "nimbus.toml: runtime = \"wasm\" needs `component = \"<file>.wasm\"`"
    );
    assert_eq!(
        err("name = \"a\"\nruntime = \"python\"\n"),
        "nimbus.toml:2: runtime = \"python\": unknown runtime; write runtime = \"wasm\" or runtime = \"process\""
    );
    assert_eq!(err("runtime = \"wasm\"\n"), "nimbus.toml:1: missing `name = \"...\"`: every function needs a name");
}

#[test]
fn syntax_errors_have_a_line() {
    let e = err("name = \"a\"\nruntime = \n");
    assert!(e.starts_with("nimbus.toml:2: "), "{e}");
}

#[test]
fn wrong_types_and_escaping_paths_are_rejected() {
    assert!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\ntimeout_ms = \"fast\"\n")
            .starts_with("nimbus.toml:4:")
    );
    assert!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"../x.wasm\"\n")
            .contains("inside the function's directory")
    );
    assert!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"/etc/x.wasm\"\n")
            .contains("inside the function's directory")
    );
    assert!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\ntimeout_ms = 900001\n")
            .contains("between 1 and 900000")
    );
    assert!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\nenv = { \"1X\" = \"v\" }\n")
            .contains("env key \"1X\"")
    );
    assert!(
        err(
            "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n[[http]]\nroute = \"/a\"\nmethods = [\"G ET\"]\n"
        )
        .contains("not an HTTP method")
    );
    assert!(err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n[[http]]\nroute = \"/a\"\n[[http]]\nroute = \"/a\"\n").contains("listed twice"));
}

#[test]
fn async_section_resolves_and_is_checked() {
    let base = "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n";
    let spec = parse(
        &format!("{base}[async]\nmax_retries = 5\nmax_event_age_s = 60\non_failure = \"function:audit\"\n"),
        "nimbus.toml",
    )
    .unwrap();
    assert_eq!(spec.async_config.max_retries, 5);
    assert_eq!(spec.async_config.max_event_age_s, 60);
    assert_eq!(spec.async_config.on_failure, Some(Destination::Function(FunctionName::parse("audit").unwrap())));
    assert_eq!(spec.async_config.on_success, None);
    assert_eq!(parse(base, "nimbus.toml").unwrap().async_config, AsyncConfig::default());
    assert_eq!(
        err(&format!("{base}[async]\nmax_retries = 11\n")),
        "nimbus.toml:5: async.max_retries = 11: must be between 0 and 10"
    );
    assert!(
        err(&format!("{base}[async]\non_success = \"lambda:x\"\n"))
            .contains("write \"function:NAME\" or \"queue:NAME\"")
    );
    assert!(err(&format!("{base}[async]\nretries = 1\n")).contains("unknown field `retries`"));
}

#[test]
fn schedules_are_parsed_and_checked_with_lines() {
    let base = "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n";
    let spec = parse(
        &format!("{base}[[schedule]]\ncron = \"0 */5 * * * *\"\ntimezone = \"Europe/Berlin\"\npayload = '{{\"job\":\"cleanup\"}}'\n[[schedule]]\ncron = \"0 3 * * *\"\n"),
        "nimbus.toml",
    )
    .unwrap();
    assert_eq!(spec.schedules.len(), 2);
    assert_eq!(spec.schedules[0].timezone, "Europe/Berlin");
    assert_eq!(spec.schedules[0].payload.as_deref(), Some("{\"job\":\"cleanup\"}"));
    assert_eq!(spec.schedules[1].timezone, "UTC");
    let e = err(&format!("{base}[[schedule]]\ncron = \"61 * * * * *\"\n"));
    assert!(e.starts_with("nimbus.toml:5: schedule: cron expression \"61 * * * * *\": second field"), "{e}");
    let e = err(&format!("{base}[[schedule]]\ncron = \"* * * * * *\"\ntimezone = \"Mars/Base\"\n"));
    assert!(e.starts_with("nimbus.toml:6: schedule: unknown time zone \"Mars/Base\""), "{e}");
}

#[test]
fn queues_are_parsed_with_defaults_and_checked() {
    let base = "name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\n";
    let spec = parse(&format!("{base}[[queue]]\nname = \"jobs\"\nbatch_size = 10\nmax_concurrency = 4\nvisibility_timeout_s = 30\n[[queue]]\nname = \"other\"\n[async]\non_failure = \"queue:failed-resizes\"\n"), "nimbus.toml").unwrap();
    assert_eq!(spec.queues.len(), 2);
    assert_eq!((spec.queues[0].batch_size, spec.queues[0].max_concurrency, spec.queues[0].max_receive), (10, 4, 5));
    assert_eq!(spec.queues[1].batch_size, 1);
    assert_eq!(spec.async_config.on_failure, Some(Destination::Queue("failed-resizes".into())));
    assert_eq!(
        err(&format!("{base}[[queue]]\nname = \"jobs\"\nbatch_size = 0\n")),
        "nimbus.toml:6: queue.batch_size = 0: must be between 1 and 100"
    );
    assert!(err(&format!("{base}[[queue]]\nname = \"Jobs\"\n")).starts_with("nimbus.toml:5: queue name \"Jobs\""));
    assert!(err(&format!("{base}[[queue]]\nname = \"j\"\n[[queue]]\nname = \"j\"\n")).contains("listed twice"));
}

#[test]
fn process_manifests_resolve_with_defaults() {
    let spec = parse(
        "name = \"orders\"\nruntime = \"process\"\ncode = \"./dist\"\n\
         command = [\"python3\", \"-m\", \"awslambdaric\", \"app.handler\"]\nhandler = \"app.handler\"\n\
         max_concurrency = 10\nmin_instances = 2\nidle_timeout_s = 60\n",
        "nimbus.toml",
    )
    .unwrap();
    let Runtime::Process(p) = spec.runtime else { panic!("not a process function") };
    assert_eq!(p.code, PathBuf::from("./dist"));
    assert_eq!(p.command, ["python3", "-m", "awslambdaric", "app.handler"]);
    assert_eq!(p.handler.as_deref(), Some("app.handler"));
    assert_eq!((p.min_instances, p.idle_timeout_s), (2, 60));

    let spec = parse("name = \"b\"\nruntime = \"process\"\nmin_instances = 0\n", "nimbus.toml").unwrap();
    let Runtime::Process(p) = spec.runtime else { panic!("not a process function") };
    assert_eq!((p.code, p.command, p.handler), (PathBuf::from("."), vec!["./bootstrap".to_owned()], None));
    assert_eq!((p.min_instances, p.idle_timeout_s), (0, ProcessSpec::DEFAULT_IDLE_TIMEOUT_S));
}

#[test]
fn golden_process_manifest_errors() {
    assert_eq!(
        err("name = \"a\"\nruntime = \"process\"\ncode = \"../elsewhere\"\ncommand = []\n"),
        "nimbus.toml:3: code = \"../elsewhere\": must be a path inside the function's directory\n\
         nimbus.toml:4: command = []: name the program, e.g. command = [\"./bootstrap\"]"
    );
    assert_eq!(
        err("name = \"a\"\nruntime = \"process\"\nmax_concurrency = 2\nmin_instances = 3\n"),
        "nimbus.toml:4: min_instances = 3: must not exceed max_concurrency = 2"
    );
    assert_eq!(
        err("name = \"a\"\nruntime = \"process\"\ncomponent = \"a.wasm\"\n"),
        "nimbus.toml:3: component is for runtime = \"wasm\"; a process function names its `code` directory"
    );
    assert_eq!(
        err("name = \"a\"\nruntime = \"wasm\"\ncomponent = \"a.wasm\"\nmin_instances = 1\n"),
        "nimbus.toml:4: min_instances is for runtime = \"process\"; a wasm function has none"
    );
    assert_eq!(
        err("name = \"a\"\nruntime = \"process\"\nenv = { _HANDLER = \"x\" }\n"),
        "nimbus.toml:3: env _HANDLER: set by nimbus for every instance; remove it"
    );
}
