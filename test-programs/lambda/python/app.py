"""nimbus test fixture: a Python "process" function for the official AWS
runtime interface client (awslambdaric).

Run as `python3 -m awslambdaric app.handler` with this directory as cwd and
AWS_LAMBDA_RUNTIME_API=host:port in the environment.

The action comes from event["action"] for a plain JSON object event, or from
the last segment of rawPath for an API Gateway HTTP API (payload 2.0) event,
whose parameters then come from queryStringParameters (as strings). Unknown
or missing actions echo.
"""

import base64
import os
import subprocess
import sys
import time

# FAIL_INIT=1 makes the import fail, so awslambdaric POSTs /runtime/init/error
# (errorType "RuntimeError", also in the Lambda-Runtime-Function-Error-Type
# header) and exits 1.
if os.environ.get("FAIL_INIT") == "1":
    raise RuntimeError("init failed on purpose")

# Per-process invocation counter: proves a warm process is reused.
COUNTER = 0


def _dispatch(event):
    """Returns (action, params) for a plain event or an API Gateway v2 event."""
    if isinstance(event, dict):
        if event.get("version") == "2.0" and "rawPath" in event:
            action = event["rawPath"].rstrip("/").rsplit("/", 1)[-1]
            return action or "echo", event.get("queryStringParameters") or {}
        return event.get("action", "echo"), event
    return "echo", {}


def handler(event, context):
    global COUNTER
    COUNTER += 1
    action, params = _dispatch(event)

    def num(name, default):
        # Query string parameters arrive as strings.
        return int(params.get(name, default))

    if action == "http":
        return {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-fixture": "python"},
            "cookies": ["a=1", "b=2; Path=/"],
            "body": base64.b64encode(b"binary\x00ok").decode("ascii"),
            "isBase64Encoded": True,
        }
    if action == "env":
        return dict(os.environ)
    if action == "error":
        raise ValueError("boom from python")
    if action == "sleep":
        ms = num("ms", 1000)
        time.sleep(ms / 1000)
        return {"slept_ms": ms}
    if action == "exit":
        print("exiting", flush=True)
        os._exit(num("code", 3))
    if action == "oom":
        return _oom(num("mb", 2048))
    if action == "forkbomb":
        return _forkbomb(num("n", 2000))
    if action == "orphan":
        # New session => escapes the runtime's process group; the platform
        # must still kill it (e.g. via a cgroup or pid namespace).
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        print(f"orphan pid {child.pid}", flush=True)
        time.sleep(600)
        return {"orphan_pid": child.pid}
    if action == "tmp":
        return _tmp()
    if action == "print":
        for i in range(num("lines", 3)):
            print(f"line {i}")
        print("to stderr", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        return "printed"
    if action == "big":
        return "x" * num("bytes", 1024)

    # echo (default)
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        # awslambdaric copies AWS_LAMBDA_FUNCTION_MEMORY_SIZE verbatim: a
        # string (or None when unset).
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "invoked_function_arn": context.invoked_function_arn,
        "counter": COUNTER,
        "pid": os.getpid(),
    }


def _oom(limit_mb):
    chunks = []
    chunk = 8 << 20
    for _ in range(0, limit_mb, 8):
        b = bytearray(chunk)
        # Write one byte per 4 KiB page so the memory is really committed
        # (bytearray(n) alone may be untouched zero pages).
        b[::4096] = b"\x01" * (chunk // 4096)
        chunks.append(b)
    return {"allocated_mb": len(chunks) * 8}


def _forkbomb(n):
    children, err = [], None
    try:
        for _ in range(n):
            children.append(subprocess.Popen(["sleep", "30"]))
    except OSError as e:  # e.g. EAGAIN from a pids limit, or ENOMEM
        err = e
    started = len(children)
    for c in children:
        c.kill()
    for c in children:
        c.wait()
    return {"started": started, "error": (str(err) or repr(err)) if err else None}


def _tmp():
    path = "/tmp/fixture.txt"
    with open(path, "w") as f:
        f.write("hello tmp")
    with open(path) as f:
        read_back = f.read()
    root = os.environ.get("LAMBDA_TASK_ROOT")
    result = {
        "written": path,
        "read_back": read_back,
        "tmp_listing": sorted(os.listdir("/tmp")),
        "task_root": root,
        "task_root_write_raised": None,
        "task_root_errno": None,
        "task_root_error": None,
    }
    if root:
        probe = os.path.join(root, "fixture-write-probe.txt")
        try:
            with open(probe, "w") as f:
                f.write("should not be writable")
            os.remove(probe)
            result["task_root_write_raised"] = False
        except OSError as e:
            result["task_root_write_raised"] = True
            result["task_root_errno"] = e.errno  # 30 = EROFS, 13 = EACCES
            result["task_root_error"] = str(e)
    return result
