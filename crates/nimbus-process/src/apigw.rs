//! HTTP requests as Lambda web handlers expect them behind a function URL or
//! an API Gateway HTTP API: the payload format 2.0 event in, and its response
//! format (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`) out.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value, json};

/// The payload format 2.0 event for `request`.
pub fn event(request: &http::Request<Bytes>, request_id: &str, function: &str, now_ms: u64) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()));
            continue;
        }
        // Repeated headers are joined with commas, as API Gateway does.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let raw_query = request.uri().query().unwrap_or("").to_owned();
    let mut query = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let body = request.body();
    let (body, is_base64) = match std::str::from_utf8(body) {
        Ok(text) if !is_binary(request) => (text.to_owned(), false),
        _ => (BASE64.encode(body), true),
    };
    let path = request.uri().path().to_owned();
    let method = request.method().as_str().to_owned();
    let host =
        request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    let user_agent =
        request.headers().get(http::header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or("").to_owned();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "nimbus",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(""),
            "http": {
                "method": method,
                "path": path,
                "protocol": format!("{:?}", request.version()),
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": now_ms,
            "functionName": function,
        },
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// Text bodies travel as text; anything else (or invalid UTF-8) as base64.
fn is_binary(request: &http::Request<Bytes>) -> bool {
    let Some(ct) = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct.to_ascii_lowercase();
    !(ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.starts_with("application/x-www-form-urlencoded"))
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Turns a function's result into the HTTP response: a payload format 2.0
/// response object when it has a `statusCode`, otherwise (as function URLs
/// do) a 200 with the result as a JSON body.
pub fn response(payload: &Bytes) -> Result<http::Response<Bytes>, String> {
    let value: Option<Value> = serde_json::from_slice(payload).ok();
    let Some(Value::Object(object)) = value.as_ref().filter(|v| v.get("statusCode").is_some()) else {
        let mut response = http::Response::new(payload.clone());
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(response);
    };
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("the function returned an invalid statusCode: {}", object["statusCode"]))?;
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if object.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) => {
            Bytes::from(BASE64.decode(s).map_err(|e| format!("the function's body is not valid base64: {e}"))?)
        }
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    };
    if let Some(Value::Object(map)) = object.get("headers") {
        for (name, value) in map {
            add(name, &scalar(value));
        }
    }
    if let Some(Value::Object(map)) = object.get("multiValueHeaders") {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                add(name, &scalar(value));
            }
        }
    }
    if let Some(Value::Array(cookies)) = object.get("cookies") {
        for cookie in cookies {
            add("set-cookie", &scalar(cookie));
        }
    }
    if !response.headers().contains_key(http::header::CONTENT_TYPE) && !response.body().is_empty() {
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(response)
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The content type of a streamed response whose first part is a JSON
/// prelude (`statusCode`, `headers`, `cookies`) ended by eight NUL bytes.
pub const HTTP_INTEGRATION_CONTENT_TYPE: &str = "application/vnd.awslambda.http-integration-response";

/// Splits a streamed HTTP integration response's prelude off `buffered`:
/// `Some((response head, rest of the body))` once the delimiter is seen.
pub fn split_prelude(buffered: &[u8]) -> Option<Result<(http::Response<()>, Bytes), String>> {
    let at = buffered.windows(8).position(|w| w == [0u8; 8])?;
    let prelude = Bytes::copy_from_slice(&buffered[..at]);
    let rest = Bytes::copy_from_slice(&buffered[at + 8..]);
    let mut with_status: Value = match serde_json::from_slice(&prelude) {
        Ok(v) => v,
        Err(e) => return Some(Err(format!("the streamed response's prelude is not JSON: {e}"))),
    };
    if with_status.get("statusCode").is_none() {
        with_status["statusCode"] = json!(200);
    }
    with_status["body"] = Value::Null;
    let bytes = Bytes::from(with_status.to_string());
    Some(response(&bytes).map(|r| (r.map(|_| ()), rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_payload_2_events() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/orders/7?x=1&y=a%20b&x=2")
            .header("host", "localhost:8080")
            .header("cookie", "a=1; b=2")
            .header("x-many", "1")
            .header("x-many", "2")
            .header("content-type", "application/json")
            .body(Bytes::from_static(b"{\"n\":1}"))
            .unwrap();
        let e = event(&request, "rid", "orders", 5);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawPath"], "/orders/7");
        assert_eq!(e["rawQueryString"], "x=1&y=a%20b&x=2");
        assert_eq!(e["queryStringParameters"]["x"], "1,2");
        assert_eq!(e["queryStringParameters"]["y"], "a b");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(e["headers"]["x-many"], "1,2");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["body"], "{\"n\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        let binary = http::Request::builder()
            .uri("/b")
            .header("content-type", "application/octet-stream")
            .body(Bytes::from_static(b"\x00\xff"))
            .unwrap();
        let e = event(&binary, "rid", "f", 0);
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["body"], "AP8=");
    }

    #[test]
    fn responses_follow_payload_2_rules() {
        let r = response(&Bytes::from_static(
            br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1","d=2"],"body":"aGk=","isBase64Encoded":true}"#,
        ))
        .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(r.body().as_ref(), b"hi");
        let plain = response(&Bytes::from_static(br#"{"hello":"world"}"#)).unwrap();
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.body().as_ref(), br#"{"hello":"world"}"#);
        assert_eq!(plain.headers()["content-type"], "application/json");
        assert!(response(&Bytes::from_static(br#"{"statusCode":"x"}"#)).is_err());
    }

    #[test]
    fn streamed_preludes_are_split_at_eight_nuls() {
        let mut data = br#"{"statusCode":202,"headers":{"x-s":"1"}}"#.to_vec();
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(b"body");
        let (head, rest) = split_prelude(&data).unwrap().unwrap();
        assert_eq!(head.status(), 202);
        assert_eq!(head.headers()["x-s"], "1");
        assert_eq!(rest.as_ref(), b"body");
        assert!(split_prelude(b"{\"statusCode\":200}").is_none());
    }
}
