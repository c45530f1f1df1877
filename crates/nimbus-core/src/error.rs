use std::fmt;

use serde::Serialize;

use crate::RequestId;

/// Every failure the platform (not the function) reports, with its HTTP status
/// and a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    InvalidManifest,
    InvalidComponent,
    Throttled,
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionTimeout,
    /// The function reported an error itself (Lambda Runtime API `/error`).
    FunctionError,
    /// The function's runtime failed to initialise.
    FunctionInitError,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 16] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::InvalidManifest,
        Self::InvalidComponent,
        Self::Throttled,
        Self::FunctionCrashed,
        Self::FunctionOutOfMemory,
        Self::FunctionTimeout,
        Self::FunctionError,
        Self::FunctionInitError,
        Self::Internal,
        Self::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::InvalidManifest => "invalid_manifest",
            Self::InvalidComponent => "invalid_component",
            Self::Throttled => "throttled",
            Self::FunctionCrashed => "function_crashed",
            Self::FunctionOutOfMemory => "function_out_of_memory",
            Self::FunctionTimeout => "function_timeout",
            Self::FunctionError => "function_error",
            Self::FunctionInitError => "function_init_error",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::BadRequest | Self::InvalidManifest | Self::InvalidComponent => S::BAD_REQUEST,
            Self::Unauthorized => S::UNAUTHORIZED,
            Self::NotFound => S::NOT_FOUND,
            Self::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            Self::Conflict => S::CONFLICT,
            Self::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::Throttled => S::TOO_MANY_REQUESTS,
            Self::FunctionCrashed | Self::FunctionOutOfMemory | Self::FunctionError | Self::FunctionInitError => {
                S::BAD_GATEWAY
            }
            Self::FunctionTimeout => S::GATEWAY_TIMEOUT,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
            Self::Unavailable => S::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed platform error with a message for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct PlatformError {
    pub code: ErrorCode,
    pub message: String,
    /// The error as the function reported it, for `function_error` and
    /// `function_init_error`.
    pub reported: Option<ReportedError>,
}

/// An error a function reported through the Lambda Runtime API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedError {
    /// `errorType`, from the JSON body or the `Lambda-Runtime-Function-Error-Type` header.
    pub error_type: String,
    pub error_message: String,
    /// The error document as Lambda returns it to invokers:
    /// `{"errorMessage":..,"errorType":..,"stackTrace":[..]}`.
    pub body: bytes::Bytes,
}

impl PlatformError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), reported: None }
    }

    /// A failure the function reported itself.
    pub fn reported(code: ErrorCode, reported: ReportedError) -> Self {
        let message = if reported.error_message.is_empty() {
            reported.error_type.clone()
        } else {
            format!("{}: {}", reported.error_type, reported.error_message)
        };
        Self { code, message, reported: Some(reported) }
    }

    /// The JSON body every platform error is sent with:
    /// `{"error":{"code":"...","message":"...","request_id":"..."}}`.
    pub fn to_json(&self, request_id: Option<&RequestId>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'static str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                request_id: request_id.map(RequestId::as_str),
            },
        };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{\"code\":\"internal\"}}".to_vec())
    }
}

/// Header naming the platform error code, so clients can tell a platform
/// error from a function's own response with the same status.
pub const ERROR_CODE_HEADER: &str = "x-nimbus-error-code";

/// Seconds a throttled caller is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 1;

impl PlatformError {
    /// The full HTTP response for this error: status, JSON body, the request
    /// id, the error-code header, and `Retry-After` when throttled.
    pub fn to_response(&self, request_id: Option<&RequestId>) -> http::Response<bytes::Bytes> {
        let mut response = http::Response::new(bytes::Bytes::from(self.to_json(request_id)));
        *response.status_mut() = self.code.status();
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        headers.insert(ERROR_CODE_HEADER, http::HeaderValue::from_static(self.code.as_str()));
        if let Some(id) = request_id.and_then(|id| http::HeaderValue::from_str(id.as_str()).ok()) {
            headers.insert(crate::REQUEST_ID_HEADER, id);
        }
        if self.code == ErrorCode::Throttled {
            headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_map_to_statuses() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::FunctionTimeout.status(), 504);
        assert_eq!(ErrorCode::Throttled.status(), 429);
        assert_eq!(ErrorCode::FunctionOutOfMemory.status(), 502);
    }

    #[test]
    fn json_body_has_the_documented_shape() {
        let err = PlatformError::new(ErrorCode::NotFound, "no route for /x");
        let id = RequestId::from_string("abc".into());
        let v: serde_json::Value = serde_json::from_slice(&err.to_json(Some(&id))).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(v["error"]["message"], "no route for /x");
        assert_eq!(v["error"]["request_id"], "abc");
    }
}
