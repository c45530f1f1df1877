//! The smallest useful nimbus function: a wasi:http 0.2 handler that greets
//! whoever calls it. Build with `cargo build --release --target wasm32-wasip2`
//! (or `./build.sh`), then `nimbus deploy examples/hello`.

use std::io::Write;

use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

wasip2::http::proxy::export!(Hello);

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hello".into());
        let path = request.path_with_query().unwrap_or_default();
        println!("greeting a request for {path}");

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().expect("a new body has a stream");
        let _ = stream.write_all(format!("{greeting} from nimbus\n").as_bytes());
        let _ = stream.flush();
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}
