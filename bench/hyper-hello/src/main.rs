//! The ceiling for the gateway benchmark: a hyper HTTP/1.1 server on the
//! same tokio runtime nimbus uses, answering every request with the bytes the
//! hello example answers, and doing nothing else.
//!
//! Usage: hyper-hello ADDR (prints `listening on http://ADDR`).

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req| async {
                let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"hello from nimbus\n")));
                response
                    .headers_mut()
                    .insert("content-type", "text/plain; charset=utf-8".parse().expect("static header"));
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
