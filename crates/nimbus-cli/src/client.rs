use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use nimbus_api::types::ErrorBody;

/// A client of one node's control API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// An answer from the API.
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiResponse {
    /// The platform error this answer carries, if it is one.
    pub fn platform_error(&self) -> Option<ErrorBody> {
        if !self.headers.contains_key(nimbus_core::ERROR_CODE_HEADER) {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }

    /// Fails unless the status is 2xx, with the API's own message.
    pub fn ok(self) -> anyhow::Result<Self> {
        if self.status.is_success() {
            return Ok(self);
        }
        match self.platform_error() {
            Some(e) => anyhow::bail!("{}: {}", e.error.code, e.error.message),
            None => anyhow::bail!("the API answered {}: {}", self.status, String::from_utf8_lossy(&self.body).trim()),
        }
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| anyhow::anyhow!("unexpected answer from the API: {e}"))
    }
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            anyhow::bail!(
                "--api {base}: this client speaks plain HTTP; reach a remote node through an SSH tunnel or a TLS-terminating proxy on loopback"
            );
        }
        if !base.starts_with("http://") {
            anyhow::bail!("--api {base}: write the API's URL, e.g. http://127.0.0.1:8090");
        }
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token: token.filter(|t| !t.is_empty()), http })
    }

    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<ApiResponse> {
        let url = format!("{}{}", self.base, path_and_query);
        let mut request = http::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (k, v) in headers {
            let value =
                HeaderValue::from_str(v).map_err(|_| anyhow::anyhow!("header {k}: the value is not valid in HTTP"))?;
            request = request.header(k.as_str(), value);
        }
        let request = request.body(Full::new(body)).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let response = self.http.request(request).await.map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.to_string());
            anyhow::anyhow!(
                "cannot reach the nimbus API at {}: {cause} (is `nimbus server` running? set --api or NIMBUS_API)",
                self.base
            )
        })?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| anyhow::anyhow!("reading the answer from {url}: {e}"))?.to_bytes();
        Ok(ApiResponse { status: parts.status, headers: parts.headers, body })
    }
}
