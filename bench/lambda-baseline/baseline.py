#!/usr/bin/env python3
"""The ceiling for the Python process function (bench/process.py): the
fixture's app.handler with no platform in between.

A minimal asyncio HTTP/1.1 server (keep-alive unless `Connection: close`,
bodiless requests only, no http.server)
that per request does what awslambdaric does around a handler, with
awslambdaric's own code, and nothing else:

1. builds the API Gateway v2 event the handler would get and encodes it to
   JSON bytes (the event reaches a runtime as bytes). The event has
   `version` "2.0", `routeKey`, `rawPath`, `rawQueryString`, `headers`
   (lower-cased, repeated ones comma-joined), `queryStringParameters` when
   there is a query, `requestContext` (`http.method`, `http.path`,
   `http.protocol`, `http.sourceIp`, `requestId`, `stage`, `timeEpoch`) and
   `isBase64Encoded` false; no body (the benchmark sends GETs);
2. decodes it with awslambdaric's LambdaMarshaller.unmarshal_request,
   makes the LambdaContext with awslambdaric's create_lambda_context, calls
   handler(event, context), and encodes the result with
   LambdaMarshaller.marshal_response (what the runtime would POST back);
3. turns that result into the HTTP response as an API Gateway does:
   `statusCode`, `headers`, `cookies` as Set-Cookie, `body` base64-decoded
   when `isBase64Encoded`.

What it leaves out is exactly the platform: the Runtime API's two HTTP
round trips per event (GET /next, POST /response) and whatever routes,
admits, logs and meters invocations.

Usage: baseline.py PORT CODE_DIR [WORKERS]
  CODE_DIR holds app.py; WORKERS processes share the port (SO_REUSEPORT),
  each one event loop. Prints `listening on http://127.0.0.1:PORT` when all
  are ready.
"""
import asyncio
import base64
import json
import os
import signal
import socket
import sys
import time
import uuid

from awslambdaric.bootstrap import create_lambda_context
from awslambdaric.lambda_runtime_marshaller import LambdaMarshaller

REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 500: "Internal Server Error"}


def api_gateway_event(method, target, headers, request_id):
    path, _, query = target.partition("?")
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        params = {}
        for pair in query.split("&"):
            k, _, v = pair.partition("=")
            params[k] = params[k] + "," + v if k in params else v
        event["queryStringParameters"] = params
    return json.dumps(event).encode()


class Handler:
    def __init__(self, handler):
        self.handler = handler
        self.marshaller = LambdaMarshaller()
        self.arn = "arn:aws:lambda:us-east-1:000000000000:function:baseline"

    def __call__(self, method, target, headers):
        request_id = str(uuid.uuid4())
        body = api_gateway_event(method, target, headers, request_id)
        deadline_ms = int(time.time() * 1000) + 3000
        context = create_lambda_context(None, None, deadline_ms, request_id, self.arn, None)
        event = self.marshaller.unmarshal_request(body, "application/json")
        result, _content_type = self.marshaller.marshal_response(self.handler(event, context))
        return self.http_response(json.loads(result))

    @staticmethod
    def http_response(result):
        if not isinstance(result, dict) or "statusCode" not in result:
            body = json.dumps(result).encode()
            return 200, [("content-type", "application/json")], body
        body = result.get("body") or ""
        body = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        headers = list((result.get("headers") or {}).items())
        headers += [("set-cookie", c) for c in result.get("cookies") or []]
        return int(result["statusCode"]), headers, body


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler):
        self.handler = handler
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
            lines = head.split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name, value = name.strip().lower(), value.strip()
                headers[name] = headers[name] + "," + value if name in headers else value
            try:
                status, out_headers, body = self.handler(method, target, headers)
            except Exception as e:  # noqa: BLE001 - a benchmark reports, never dies
                status, out_headers, body = 500, [], repr(e).encode()
            out = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"content-length: {len(body)}"]
            out += [f"{k}: {v}" for k, v in out_headers]
            close = headers.get("connection", "").lower() == "close"
            if close:
                out.append("connection: close")
            self.transport.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            if close:
                self.transport.close()
                return


def serve(port, code_dir, ready_w):
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    import app  # noqa: PLC0415 - the fixture, imported once per worker as awslambdaric does

    handler = Handler(app.handler)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)

    async def main():
        server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(handler), sock=sock)
        os.write(ready_w, b"r")
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main():
    port, code_dir = int(sys.argv[1]), os.path.abspath(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    ready_r, ready_w = os.pipe()
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(port, code_dir, ready_w)
            os._exit(0)
        children.append(pid)
    for _ in range(workers):
        os.read(ready_r, 1)
    print(f"listening on http://127.0.0.1:{port} ({workers} worker{'s' if workers > 1 else ''})", flush=True)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            os.waitpid(pid, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
