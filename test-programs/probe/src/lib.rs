//! A wasi:http guest whose behaviour is chosen by the last segment of the
//! request path (so `/loop` and `/any/prefix/loop` behave alike), letting the
//! end-to-end tests provoke every outcome with one component:
//!
//! | path            | behaviour                                             |
//! |-----------------|-------------------------------------------------------|
//! | `/loop`         | spins forever                                         |
//! | `/grow?mb=N`    | allocates and touches N MiB, answers "grew N"         |
//! | `/trap`         | panics                                                |
//! | `/exit`         | calls `exit(3)`                                       |
//! | `/sleep?ms=N`   | sleeps N ms, answers "slept N version=$VERSION"       |
//! | `/log?lines=N`  | writes N lines to stdout and to stderr                |
//! | `/env`          | answers its whole environment as `K=V` lines          |
//! | `/counter`      | increments a global counter and answers its value     |
//! | `/big?bytes=N`  | answers N bytes of 'x'                                |
//! | `/files`        | tries to list `/` and answers what happened           |
//! | `/noresponse`   | returns without setting a response                    |
//! | `/flaky`        | answers 500 unless the env has FIXED=1, then 200      |
//! | `/print`        | prints the request body to stdout, answers 200        |
//! | `/fail-first`   | answers batchItemFailures naming the first messageId  |
//! | `/fetch`        | tries an outbound HTTP request, answers what happened |
//! | `/connect`      | tries a TCP connection, answers what happened         |
//! | anything else   | echoes method, path, headers and body as text         |

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use wasip2::http::types::{Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Probe);

struct Probe;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn query_num(query: &str, key: &str) -> u64 {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let _ = headers.set("x-probe", &[b"1".to_vec()]);
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let outgoing = resp.body().expect("body");
    ResponseOutparam::set(out, Ok(resp));
    {
        let mut stream = outgoing.write().expect("stream");
        for chunk in body.chunks(4096) {
            stream.write_all(chunk).expect("write");
        }
        stream.flush().expect("flush");
    }
    OutgoingBody::finish(outgoing, None).expect("finish");
}

fn read_body(req: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = req.consume() {
        if let Ok(mut stream) = incoming.stream() {
            let _ = stream.read_to_end(&mut body);
        }
    }
    body
}

/// Tries `GET http://127.0.0.1:9/` through wasi:http/outgoing-handler.
fn fetch() -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{OutgoingRequest, Scheme};
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some("127.0.0.1:9"));
    let _ = request.set_path_with_query(Some("/"));
    match outgoing_handler::handle(request, None) {
        Err(e) => format!("denied: {e:?}"),
        Ok(pending) => {
            pending.subscribe().block();
            match pending.get() {
                Some(Ok(Ok(response))) => format!("fetched: {}", response.status()),
                Some(Ok(Err(e))) => format!("denied: {e:?}"),
                other => format!("failed: {other:?}"),
            }
        }
    }
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let full = req.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let last = path.rsplit('/').next().unwrap_or_default();
        match format!("/{last}").as_str() {
            "/loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "/grow" => {
                let mb = query_num(query, "mb") as usize;
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                for _ in 0..mb {
                    chunks.push(vec![1u8; 1024 * 1024]);
                }
                let total: usize = chunks.iter().map(|c| c.len()).sum();
                respond(out, 200, format!("grew {}", total / (1024 * 1024)).as_bytes());
            }
            "/trap" => panic!("probe was asked to trap"),
            "/exit" => std::process::exit(3),
            "/sleep" => {
                let ms = query_num(query, "ms");
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let version = std::env::var("VERSION").unwrap_or_default();
                respond(out, 200, format!("slept {ms} version={version}").as_bytes());
            }
            "/log" => {
                let lines = query_num(query, "lines");
                for i in 0..lines {
                    println!("stdout line {i}");
                    eprintln!("stderr line {i}");
                }
                respond(out, 200, b"logged");
            }
            "/env" => {
                let mut text = String::new();
                for (k, v) in std::env::vars() {
                    text.push_str(&format!("{k}={v}\n"));
                }
                respond(out, 200, text.as_bytes());
            }
            "/counter" => {
                let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
                respond(out, 200, n.to_string().as_bytes());
            }
            "/big" => {
                let n = query_num(query, "bytes") as usize;
                respond(out, 200, &vec![b'x'; n]);
            }
            "/files" => {
                let text = match std::fs::read_dir("/") {
                    Ok(entries) => format!("listed {} entries", entries.count()),
                    Err(e) => format!("denied: {e}"),
                };
                respond(out, 200, text.as_bytes());
            }
            "/noresponse" => {}
            "/fetch" => respond(out, 200, fetch().as_bytes()),
            "/print" => {
                let body = read_body(&req);
                println!("{}", String::from_utf8_lossy(&body));
                respond(out, 200, b"printed");
            }
            "/fail-first" => {
                let body = String::from_utf8_lossy(&read_body(&req)).into_owned();
                println!("{body}");
                let first = body.split("\"messageId\":\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
                let answer = format!("{{\"batchItemFailures\":[{{\"itemIdentifier\":\"{first}\"}}]}}");
                respond(out, 200, answer.as_bytes());
            }
            "/flaky" => match std::env::var("FIXED").as_deref() {
                Ok("1") => respond(out, 200, b"fixed"),
                _ => respond(out, 500, b"still broken"),
            },
            "/connect" => {
                let text = match std::net::TcpStream::connect("127.0.0.1:9") {
                    Ok(_) => "connected".to_string(),
                    Err(e) => format!("denied: {e}"),
                };
                respond(out, 200, text.as_bytes());
            }
            _ => {
                let method = method_name(&req.method());
                let mut text = format!("method={method}\npath={full}\n");
                for (name, value) in req.headers().entries() {
                    text.push_str(&format!("header:{name}={}\n", String::from_utf8_lossy(&value)));
                }
                let body = read_body(&req);
                text.push_str("body=");
                text.push_str(&String::from_utf8_lossy(&body));
                respond(out, 200, text.as_bytes());
            }
        }
    }
}
