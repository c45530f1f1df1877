"""boto3 against nimbus's Lambda Invoke API; run by tests/process_functions.rs.

Expects a node at $NIMBUS_API with token $NIMBUS_TOKEN, a Python process
function `boto` (the test-programs/lambda/python fixture, max_concurrency 1,
timeout 2 s) and the Wasm probe `wasmfn`. Every check raises on failure.
"""

import base64
import json
import os
import threading
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions

API = os.environ["NIMBUS_API"]
TOKEN = os.environ["NIMBUS_TOKEN"]


def client(access_key=TOKEN):
    return boto3.client(
        "lambda",
        endpoint_url=API,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key="unused",
        config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=30),
    )


lam = client()


def invoke(payload, **kwargs):
    r = lam.invoke(FunctionName="boto", Payload=json.dumps(payload), **kwargs)
    return r, r["Payload"].read()


# RequestResponse with the log tail.
r, body = invoke({"action": "print", "lines": 2}, LogType="Tail")
assert r["StatusCode"] == 200, r
assert r["ExecutedVersion"] == "$LATEST", r
assert "FunctionError" not in r, r
assert json.loads(body) == "printed", body
log = base64.b64decode(r["LogResult"]).decode()
assert "START RequestId:" in log and "REPORT RequestId:" in log, log
assert "line 0" in log and "line 1" in log and "to stderr" in log, log
assert "Init Duration" in log, log  # the first call started the instance

# The echo sees the payload as the event, and the client context decoded.
context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
r, body = invoke({"action": "echo", "n": 5}, ClientContext=context)
echo = json.loads(body)
assert echo["event"] == {"action": "echo", "n": 5}, echo
assert echo["counter"] == 2, echo

# A function error: 200, X-Amz-Function-Error, the error document.
r, body = invoke({"action": "error"})
assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled", r
doc = json.loads(body)
assert doc["errorType"] == "ValueError" and doc["errorMessage"] == "boom from python", doc

# A timeout is a function error too.
r, body = invoke({"action": "sleep", "ms": 4000})
assert r["FunctionError"] == "Unhandled", r
doc = json.loads(body)
assert doc["errorType"] == "Sandbox.Timedout" and "Task timed out after 2.00 seconds" in doc["errorMessage"], doc

# DryRun checks and runs nothing.
r = lam.invoke(FunctionName="boto", InvocationType="DryRun")
assert r["StatusCode"] == 204, r

# Event goes through the durable asynchronous queue and runs.
r = lam.invoke(FunctionName="boto", InvocationType="Event", Payload=json.dumps({"action": "echo", "async": True}))
assert r["StatusCode"] == 202, r
request_id = r["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
deadline = time.time() + 20
while True:
    req = urllib.request.Request(f"{API}/v1/invocations/{request_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    view = json.load(urllib.request.urlopen(req))
    if view["status"] == "succeeded":
        assert json.loads(view["result"])["event"] == {"action": "echo", "async": True}, view
        break
    assert time.time() < deadline, f"the Event invocation did not run: {view}"
    time.sleep(0.05)

# Above max_concurrency: TooManyRequestsException (429).
results = []


def slow():
    try:
        invoke({"action": "sleep", "ms": 1500})
        results.append("ok")
    except botocore.exceptions.ClientError as e:
        results.append(e.response["Error"]["Code"])


threads = [threading.Thread(target=slow) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert sorted(results) == ["TooManyRequestsException", "ok"], results

# Unknown functions and non-JSON payloads are Lambda's own errors.
try:
    lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    raise AssertionError("expected ResourceNotFoundException")
except lam.exceptions.ResourceNotFoundException:
    pass
try:
    lam.invoke(FunctionName="boto", Payload=b"not json")
    raise AssertionError("expected InvalidRequestContentException")
except lam.exceptions.InvalidRequestContentException:
    pass

# The wrong token is refused.
try:
    client("wrong-token").invoke(FunctionName="boto", Payload=b"{}")
    raise AssertionError("expected a refusal")
except botocore.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response

# Wasm functions answer the Invoke API too: the probe describes the POST it got.
r = lam.invoke(FunctionName="wasmfn", Payload=json.dumps({"from": "boto3"}))
assert r["StatusCode"] == 200 and "FunctionError" not in r, r
described = r["Payload"].read().decode()
assert "method=POST" in described and 'body={"from": "boto3"}' in described, described

print("all boto3 checks passed")
