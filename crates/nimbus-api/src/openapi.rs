//! The OpenAPI 3.1 description of the control API, served at
//! `/v1/openapi.json`. Kept beside the routes it describes; a test checks
//! that every route is documented.

use serde_json::{Value, json};

fn name_param() -> Value {
    json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$" } })
}

pub fn document() -> String {
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nimbus control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Deploy, invoke and observe functions on a nimbus node. With a token configured, every /v1 call needs `Authorization: Bearer <token>`."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "responses": {
                "Error": {
                    "description": "A platform error",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": { "type": "string", "enum": nimbus_core::ErrorCode::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>() },
                            "message": { "type": "string" },
                            "request_id": { "type": "string" }
                        }
                    } }
                },
                "Limits": {
                    "type": "object",
                    "properties": {
                        "memory_mb": { "type": "integer" },
                        "timeout_ms": { "type": "integer" },
                        "max_concurrency": { "type": "integer" }
                    }
                },
                "Function": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "runtime": { "type": "string", "enum": ["wasm"] },
                        "routes": { "type": "array", "items": { "type": "string" } },
                        "version": { "type": "integer" },
                        "deployed_at": { "type": "string", "format": "date-time" },
                        "deployed_at_ms": { "type": "integer" },
                        "component_sha256": { "type": "string" },
                        "limits": { "$ref": "#/components/schemas/Limits" },
                        "in_flight": { "type": "integer" }
                    }
                },
                "LogEntry": {
                    "type": "object",
                    "properties": {
                        "seq": { "type": "integer" },
                        "time": { "type": "string", "format": "date-time" },
                        "request_id": { "type": "string" },
                        "status": { "type": "integer" },
                        "outcome": { "type": "string" },
                        "duration_ms": { "type": "number" },
                        "output": { "type": "string" }
                    }
                }
            }
        },
        "security": [{ "bearer": [] }],
        "paths": {
            "/v1/functions": {
                "get": {
                    "summary": "List deployed functions",
                    "responses": {
                        "200": { "description": "The functions", "content": { "application/json": { "schema": {
                            "type": "object", "properties": { "functions": { "type": "array", "items": { "$ref": "#/components/schemas/Function" } } }
                        } } } },
                        "401": { "$ref": "#/components/responses/Error" }
                    }
                }
            },
            "/v1/functions/{name}": {
                "parameters": [name_param()],
                "get": {
                    "summary": "Show one function",
                    "responses": { "200": { "description": "The function", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Function" } } } } }
                },
                "delete": {
                    "summary": "Remove a function",
                    "responses": { "204": { "description": "Removed" } }
                }
            },
            "/v1/deploy": {
                "post": {
                    "summary": "Deploy a function",
                    "description": "The body is a tar archive holding nimbus.toml at its top level and the component it names. Validation and compilation happen before anything changes; a refused deploy changes nothing.",
                    "requestBody": { "required": true, "content": { "application/x-tar": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": {
                        "201": { "description": "Deployed", "content": { "application/json": { "schema": {
                            "type": "object",
                            "properties": {
                                "function": { "$ref": "#/components/schemas/Function" },
                                "compile_ms": { "type": "number" },
                                "compiled": { "type": "boolean" }
                            }
                        } } } },
                        "400": { "$ref": "#/components/responses/Error" },
                        "409": { "$ref": "#/components/responses/Error" },
                        "413": { "$ref": "#/components/responses/Error" }
                    }
                }
            },
            "/v1/functions/{name}/invoke": {
                "parameters": [
                    name_param(),
                    { "name": "method", "in": "query", "schema": { "type": "string", "default": "POST" }, "description": "HTTP method the function sees" },
                    { "name": "path", "in": "query", "schema": { "type": "string" }, "description": "Path and query the function sees; default: its first route" }
                ],
                "post": {
                    "summary": "Invoke a function synchronously",
                    "description": "The body and headers (except Authorization, Host and x-nimbus-*) are passed to the function; its response comes back as it is, with x-nimbus-request-id and x-nimbus-duration-ms. Platform errors carry x-nimbus-error-code.",
                    "requestBody": { "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": {
                        "default": { "description": "The function's own response" },
                        "413": { "$ref": "#/components/responses/Error" },
                        "429": { "$ref": "#/components/responses/Error" },
                        "502": { "$ref": "#/components/responses/Error" },
                        "504": { "$ref": "#/components/responses/Error" }
                    }
                }
            },
            "/v1/functions/{name}/logs": {
                "parameters": [
                    name_param(),
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "default": 20, "maximum": 1000 } },
                    { "name": "after", "in": "query", "schema": { "type": "integer" }, "description": "Only entries with seq greater than this" },
                    { "name": "wait_ms", "in": "query", "schema": { "type": "integer", "maximum": 30000 }, "description": "With after: wait this long for a new entry" }
                ],
                "get": {
                    "summary": "Recent invocations with their output",
                    "responses": { "200": { "description": "Log entries, oldest first", "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": {
                            "entries": { "type": "array", "items": { "$ref": "#/components/schemas/LogEntry" } },
                            "last_seq": { "type": "integer" }
                        }
                    } } } } }
                }
            },
            "/v1/functions/{name}/invocations": {
                "parameters": [name_param()],
                "post": {
                    "summary": "Accept an asynchronous invocation",
                    "description": "202 only once the invocation is on disk. Query method and path as for invoke; header Idempotency-Key returns the same id for 24 h.",
                    "parameters": [{ "name": "Idempotency-Key", "in": "header", "schema": { "type": "string", "maxLength": 256 } }],
                    "requestBody": { "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": { "202": { "description": "Accepted", "content": { "application/json": { "schema": {
                        "type": "object", "properties": { "id": { "type": "string" }, "duplicate": { "type": "boolean" } }
                    } } } } }
                },
                "get": {
                    "summary": "Recent asynchronous invocations, newest first",
                    "parameters": [{ "name": "limit", "in": "query", "schema": { "type": "integer", "default": 20 } }],
                    "responses": { "200": { "description": "{\"invocations\": [Invocation]}" } }
                }
            },
            "/v1/invocations/{id}": {
                "get": {
                    "summary": "One asynchronous invocation",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "200": { "description": "Status (queued, running, failed, succeeded, dead), attempts, request, result or error" } }
                }
            },
            "/v1/functions/{name}/dlq": {
                "parameters": [name_param()],
                "get": { "summary": "The function's dead-letter queue", "responses": { "200": { "description": "{\"entries\": [Invocation]}" } } }
            },
            "/v1/functions/{name}/dlq/redrive": {
                "parameters": [name_param()],
                "post": { "summary": "Queue dead invocations again (body {\"ids\": [...]}, or empty for all)", "responses": { "200": { "description": "{\"count\": n}" } } }
            },
            "/v1/functions/{name}/dlq/purge": {
                "parameters": [name_param()],
                "post": { "summary": "Delete dead invocations (body {\"ids\": [...]}, or empty for all)", "responses": { "200": { "description": "{\"count\": n}" } } }
            },
            "/v1/queues": { "get": { "summary": "Built-in queues with counts and consumers", "responses": { "200": { "description": "{\"queues\": [...]}" } } } },
            "/v1/queues/{queue}/messages": {
                "post": {
                    "summary": "Send a message (202 once on disk)",
                    "parameters": [{ "name": "queue", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "requestBody": { "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": { "202": { "description": "{\"id\": \"...\"}" } }
                }
            },
            "/v1/queues/{queue}/dlq": {
                "get": {
                    "summary": "A queue's dead-letter queue",
                    "parameters": [{ "name": "queue", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "200": { "description": "{\"messages\": [...]}" } }
                }
            },
            "/v1/queues/{queue}/dlq/redrive": {
                "post": {
                    "summary": "Deliver a queue's dead messages again",
                    "parameters": [{ "name": "queue", "in": "path", "required": true, "schema": { "type": "string" } }],
                    "responses": { "200": { "description": "{\"count\": n}" } }
                }
            },
            "/2015-03-31/functions/{name}/invocations": {
                "post": {
                    "summary": "The AWS Lambda Invoke API (boto3, AWS CLI); see docs/process-functions.md",
                    "parameters": [
                        name_param(),
                        { "name": "X-Amz-Invocation-Type", "in": "header", "schema": { "enum": ["RequestResponse", "Event", "DryRun"] } },
                        { "name": "X-Amz-Log-Type", "in": "header", "schema": { "enum": ["None", "Tail"] } },
                        { "name": "X-Amz-Client-Context", "in": "header", "schema": { "type": "string" } },
                        { "name": "Qualifier", "in": "query", "schema": { "type": "string" } }
                    ],
                    "requestBody": { "content": { "application/json": {} } },
                    "responses": {
                        "200": { "description": "The result; with X-Amz-Function-Error: Unhandled, the error document" },
                        "202": { "description": "Event: queued durably" },
                        "204": { "description": "DryRun: the function exists" },
                        "404": { "description": "ResourceNotFoundException" },
                        "429": { "description": "TooManyRequestsException" }
                    }
                }
            },
            "/v1/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "security": [], "responses": { "200": { "description": "Text exposition format 0.0.4" } } } },
            "/healthz": { "get": { "summary": "Liveness", "security": [], "responses": { "200": { "description": "ok" } } } }
        }
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::document()).unwrap();
        for path in [
            "/v1/functions",
            "/v1/functions/{name}",
            "/v1/deploy",
            "/v1/functions/{name}/invoke",
            "/v1/functions/{name}/logs",
            "/v1/openapi.json",
            "/v1/functions/{name}/invocations",
            "/v1/invocations/{id}",
            "/v1/functions/{name}/dlq",
            "/v1/functions/{name}/dlq/redrive",
            "/v1/functions/{name}/dlq/purge",
            "/v1/queues",
            "/v1/queues/{queue}/messages",
            "/v1/queues/{queue}/dlq",
            "/v1/queues/{queue}/dlq/redrive",
            "/metrics",
            "/healthz",
            "/2015-03-31/functions/{name}/invocations",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not documented");
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
