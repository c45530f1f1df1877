#!/usr/bin/env python3
"""Asynchronous invocation benchmark: durable accepts beside synchronous invokes.

Measures, in one run on one machine, against the control API:
  (1) durable accepts per second: wrk -t1 -c32 POSTing
      /v1/functions/hello/invocations (202 only once fsync'd), beside the
      synchronous invoke API (/v1/functions/hello/invoke) with the same wrk
      settings as the baseline; ratio accepts/sync, and whether the aim of
      5,000 accepts/s was reached;
  (2) drain throughput: how fast the dispatcher works off the backlog that
      the accept run left (polling /metrics until queue depth and running
      are 0 for hello);
  (3) end-to-end latency at light load: 200 invocations submitted one at a
      time at ~50/s, finished_at - created_at from the server's own records;
      baseline: the client-measured round trip of 200 sequential synchronous
      invokes.
Prints a table and writes the raw figures to target/bench-async.json.
See bench/README.md.
"""
import http.client
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from harness import NIMBUS, ROOT, deploy, free_port, nimbus_server, sh, start, stop, to_ms
HELLO_DIR = os.path.join(ROOT, "examples/hello")
HELLO = os.path.join(HELLO_DIR, "hello.wasm")
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = 32
AIM_ACCEPTS_PER_S = 5000
LIGHT_LOAD_COUNT = 200
LIGHT_LOAD_RATE = 50.0  # submissions per second
ACCEPT_PATH = "/v1/functions/hello/invocations?method=GET&path=/hello"
INVOKE_PATH = "/v1/functions/hello/invoke?method=GET&path=/hello"
QUEUE_SEND_PATH = "/v1/queues/bench-jobs/messages"
BODY = '{"bench": "async", "n": 1}'
DRAIN_TIMEOUT_S = float(os.environ.get("BENCH_DRAIN_TIMEOUT", "600"))

# wrk script: POSTs BODY; counts every non-2xx answer itself (wrk's own
# "Non-2xx or 3xx" line only counts status >= 400), keeps the first few
# bodies so that errors under load can be reported verbatim, and the last 2xx
# body (for accepts: the id of the newest invocation).
WRK_LUA = r"""
wrk.method = "POST"
wrk.path = "%(path)s"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
  bad = 0
  samples = ""
  kept = 0
  last = ""
end

function response(status, headers, body)
  if status >= 200 and status <= 299 then
    last = body
  else
    bad = bad + 1
    if kept < 5 then
      kept = kept + 1
      samples = samples .. status .. " " .. string.gsub(tostring(body), "\n", " ") .. "\n"
    end
  end
end

function done(summary, latency, requests)
  local total, text, last = 0, "", ""
  for _, t in ipairs(threads) do
    total = total + t:get("bad")
    text = text .. t:get("samples")
    last = t:get("last")
  end
  io.write("LUA_LAST " .. string.gsub(tostring(last), "\n", " ") .. "\n")
  io.write("LUA_NON2XX " .. total .. "\n")
  io.write(text)
  io.write("LUA_END\n")
end
"""








def wrk(url, path):
    """wrk -t1 -c32 POSTing BODY to url+path; returns req/s, p50, p99, counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA % {"path": path, "body": BODY})
        script = f.name
    try:
        started = time.perf_counter()
        proc = subprocess.run(
            ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "-s", script, url],
            capture_output=True, text=True,
        )
        ended = time.perf_counter()
    finally:
        os.unlink(script)
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec" not in out:
        raise SystemExit(f"wrk failed on {url}{path} (exit {proc.returncode}):\n{out}\n{proc.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    pct = {m.group(1): to_ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    lua = re.search(r"LUA_NON2XX (\d+)\n(.*?)LUA_END", out, re.S)
    non2xx = int(lua.group(1)) if lua else 0
    samples = lua.group(2).strip().splitlines() if lua else []
    wrk_non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if wrk_non2xx:
        non2xx = max(non2xx, int(wrk_non2xx.group(1)))
    last = re.search(r"^LUA_LAST (.*)$", out, re.M)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = dict(zip(["connect", "read", "write", "timeout"], map(int, sock.groups()))) if sock else {}
    return {
        "rps": rps, "p50_ms": pct.get("50"), "p99_ms": pct.get("99"), "requests": requests,
        "non2xx": non2xx, "error_samples": samples, "socket_errors": socket_errors,
        "last_body": last.group(1).strip() if last else "",
        "started": started, "ended": ended, "raw": out,
    }


def check(name, r):
    """Fails loudly on any non-2xx answer or socket error under load."""
    problems = []
    if r["non2xx"]:
        problems.append(f"{r['non2xx']} non-2xx responses; first ones:\n  " + "\n  ".join(r["error_samples"]))
    if any(r["socket_errors"].values()):
        problems.append(f"socket errors: {r['socket_errors']}")
    if problems:
        raise SystemExit(f"{name}: failed under load: " + "; ".join(problems) + f"\nwrk output:\n{r['raw']}")










class Api:
    """One keep-alive HTTP/1.1 connection to the control API."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise

    def json(self, method, path, body=None, expect=200):
        status, data = self.request(method, path, body, {"Content-Type": "application/json"})
        if status != expect:
            raise SystemExit(f"{method} {path}: expected {expect}, got {status}: {data.decode(errors='replace')}")
        return json.loads(data)


def async_gauges(api):
    """(queue depth, running, dlq size) of hello from /metrics; None before hello has any."""
    status, data = api.request("GET", "/metrics")
    if status != 200:
        raise SystemExit(f"GET /metrics: {status}: {data.decode(errors='replace')}")
    text = data.decode()
    values = []
    for series in ["nimbus_async_queue_depth", "nimbus_async_running", "nimbus_async_dlq_size"]:
        m = re.search(rf'^{series}{{function="hello"}} (\d+)', text, re.M)
        if not m:
            return None
        values.append(int(m.group(1)))
    return tuple(values)


def wait_drained(api, newest_id):
    """Waits until nothing of hello is queued or running; returns when (perf_counter).

    /metrics counts the queue with a scan of the whole table, under the same
    lock the dispatcher claims with, so polling it often slows the drain it
    measures. Instead: poll the newest accepted invocation by id (a primary
    key lookup) every 20 ms until it has finished (work is claimed oldest
    first, so little is left by then), and only then confirm with /metrics."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT_S
    while newest_id and time.perf_counter() < deadline:
        r = api.json("GET", f"/v1/invocations/{newest_id}")
        if r["status"] in ("succeeded", "dead"):
            break
        time.sleep(0.02)
    while time.perf_counter() < deadline:
        g = async_gauges(api)
        if g is not None and g[0] == 0 and g[1] == 0:
            return time.perf_counter(), g
        time.sleep(0.1)
    raise SystemExit(f"the backlog did not drain within {DRAIN_TIMEOUT_S:.0f}s (BENCH_DRAIN_TIMEOUT): "
                     f"hello queued, running, dead = {async_gauges(api)}")


def parse_rfc3339(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values):
    return {"n": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
            "max_ms": max(values), "mean_ms": sum(values) / len(values)}


def end_to_end(api):
    """Submits LIGHT_LOAD_COUNT invocations at ~LIGHT_LOAD_RATE/s, then reads their records."""
    ids, submit_ms = [], []
    interval = 1.0 / LIGHT_LOAD_RATE
    started = time.perf_counter()
    for i in range(LIGHT_LOAD_COUNT):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        accepted = api.json("POST", ACCEPT_PATH, BODY, expect=202)
        submit_ms.append((time.perf_counter() - t0) * 1000)
        ids.append(accepted["id"])
    records = {}
    deadline = time.perf_counter() + 60
    pending = list(ids)
    while pending:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{len(pending)} light-load invocations did not finish within 60s, e.g. {pending[0]}")
        still = []
        for id in pending:
            r = api.json("GET", f"/v1/invocations/{id}")
            if r["status"] in ("succeeded", "dead"):
                records[id] = r
            else:
                still.append(id)
        pending = still
        if pending:
            time.sleep(0.1)
    not_ok = [(id, r["status"], r.get("error")) for id, r in records.items() if r["status"] != "succeeded"]
    if not_ok:
        raise SystemExit(f"{len(not_ok)} light-load invocations did not succeed, e.g. {not_ok[:3]}")
    e2e, queued = [], []
    for id in ids:
        r = records[id]
        created = parse_rfc3339(r["created_at"])
        e2e.append((parse_rfc3339(r["finished_at"]) - created).total_seconds() * 1000)
        if r["attempts"]:
            queued.append((parse_rfc3339(r["attempts"][-1]["started_at"]) - created).total_seconds() * 1000)
    return {"e2e": summary(e2e), "created_to_started": summary(queued) if queued else None,
            "submit_rtt": summary(submit_ms), "e2e_raw_ms": e2e}


def sync_latency(api):
    rtt = []
    for _ in range(LIGHT_LOAD_COUNT):
        t0 = time.perf_counter()
        status, data = api.request("POST", INVOKE_PATH, BODY, {"Content-Type": "application/json"})
        rtt.append((time.perf_counter() - t0) * 1000)
        if status != 200 or data != b"hello from nimbus\n":
            raise SystemExit(f"synchronous invoke: {status} {data[:200]!r}")
    return summary(rtt)


def fs_type(path):
    """The file system type holding path (fsync on tmpfs would measure nothing)."""
    best, kind = "", "?"
    path = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, parts[2]
    return kind


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    if not os.access(NIMBUS, os.X_OK):
        raise SystemExit(f"{NIMBUS} is missing: cargo build --release -p nimbus")
    if not os.path.exists(HELLO):
        print("building the hello example ...", flush=True)
        sh(os.path.join(HELLO_DIR, "build.sh"), stdout=subprocess.DEVNULL)
        if not os.path.exists(HELLO):
            raise SystemExit(f"{HELLO} is missing after examples/hello/build.sh")

    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    # On the project's disk rather than /tmp, which may be a tmpfs.
    work = tempfile.mkdtemp(prefix="nimbus-bench-async-", dir=os.path.join(ROOT, "target"))
    data_dir = os.path.join(work, "data")
    proc = None
    load_before = os.getloadavg()
    try:
        port, api_port = free_port(), free_port()
        proc, _ = nimbus_server(data_dir, port, api_port)
        deploy(api_port, HELLO_DIR)
        api = Api(api_port)
        control = f"http://127.0.0.1:{api_port}"
        sync_latency(api)  # warm-up: the first instances, the first connection

        # (1) the synchronous baseline, then durable accepts, same wrk settings
        print(f"wrk -t1 -c{CONNECTIONS} -d{DURATION}: synchronous invoke ...", flush=True)
        sync = wrk(control, INVOKE_PATH)
        check("synchronous invoke", sync)
        print(f"wrk -t1 -c{CONNECTIONS} -d{DURATION}: durable accepts ...", flush=True)
        accepts = wrk(control, ACCEPT_PATH)
        check("durable accepts", accepts)

        # (2) drain: from the end of the accept run until nothing is queued or running
        backlog_at_end = async_gauges(api)
        try:
            newest_id = json.loads(accepts["last_body"])["id"]
        except (ValueError, KeyError, TypeError):
            newest_id = None
        drained_at, final_gauges = wait_drained(api, newest_id)
        drain_s = drained_at - accepts["ended"]
        accepted = accepts["requests"]
        backlog = (backlog_at_end[0] + backlog_at_end[1]) if backlog_at_end else accepted
        drain = {
            "accepted": accepted,
            "backlog_at_end_of_wrk": backlog,
            "drain_s": drain_s,
            "accepted_per_drain_s": accepted / drain_s,
            "backlog_per_drain_s": backlog / drain_s if drain_s > 0 else None,
            "completed_per_s_overall": accepted / (drained_at - accepts["started"]),
            "dlq_size": final_gauges[2],
        }
        if final_gauges[2]:
            print(f"WARNING: {final_gauges[2]} invocations of hello ended in the dead-letter queue", flush=True)

        # (3) end-to-end latency at light load, beside synchronous round trips
        print(f"light load: {LIGHT_LOAD_COUNT} submissions at ~{LIGHT_LOAD_RATE:.0f}/s ...", flush=True)
        e2e = end_to_end(api)
        sync_rtt = sync_latency(api)

        # (4) queue throughput: durable sends, then a consumer with batches of 10
        print(f"wrk -t1 -c{CONNECTIONS} -d{DURATION}: queue sends ...", flush=True)
        sends = wrk(control, QUEUE_SEND_PATH)
        check("queue sends", sends)
        consumer = os.path.join(work, "consumer")
        os.makedirs(consumer)
        shutil.copy(HELLO, os.path.join(consumer, "hello.wasm"))
        with open(os.path.join(consumer, "nimbus.toml"), "w") as f:
            f.write('name = "consumer"\nruntime = "wasm"\ncomponent = "hello.wasm"\n'
                    '[[queue]]\nname = "bench-jobs"\nbatch_size = 10\nmax_concurrency = 4\n')
        consume_started = time.perf_counter()
        deploy(api_port, consumer)
        deadline = time.time() + DRAIN_TIMEOUT_S
        while True:
            queues = api.json("GET", "/v1/queues")["queues"]
            q = next((q for q in queues if q["name"] == "bench-jobs"), None)
            if q and q["ready"] == 0 and q["in_flight"] == 0:
                break
            if time.time() > deadline:
                raise SystemExit(f"the queue did not drain within {DRAIN_TIMEOUT_S} s: {q}")
            time.sleep(0.25)  # /v1/queues counts every message: poll gently
        consume_s = time.perf_counter() - consume_started
        queue_result = {
            "sent": sends["requests"], "dead": q["dead"], "consume_s": consume_s,
            "messages_per_s": sends["requests"] / consume_s,
        }
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    ratio = accepts["rps"] / sync["rps"]
    reached = accepts["rps"] >= AIM_ACCEPTS_PER_S
    print()
    print(f"machine: {os.cpu_count()} cores, load average before the run {load_before[0]:.2f}; "
          f"data dir on {fs_type(os.path.join(ROOT, 'target'))}; wrk -t1 -c{CONNECTIONS}, {DURATION} per run; "
          f"same machine, same run")

    def wrk_row(name, r):
        print(f"{name:<34}{r['rps']:>10,.0f} req/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms"
              f"  ({r['requests']:,} requests, {r['non2xx']} non-2xx)")

    wrk_row("(a) synchronous invoke", sync)
    wrk_row("(b) durable accepts (202)", accepts)
    print(f"b/a = {ratio:.2f}   aim >= {AIM_ACCEPTS_PER_S:,} accepts/s: "
          f"{'REACHED' if reached else 'NOT reached'} ({accepts['rps']:,.0f}/s)")
    print(f"drain: {drain['backlog_at_end_of_wrk']:,} of {accepted:,} accepted still queued or running when wrk "
          f"ended; drained {drain_s:.2f} s later -> {drain['accepted_per_drain_s']:,.0f} accepted/s of drain time, "
          f"{drain['backlog_per_drain_s']:,.0f} backlog/s; overall {drain['completed_per_s_overall']:,.0f} completed/s "
          f"from wrk start; {drain['dlq_size']} dead")
    lat = e2e["e2e"]
    print(f"{'(c) async submit -> finished':<34}p50 {lat['p50_ms']:7.1f} ms  p99 {lat['p99_ms']:7.1f} ms  "
          f"max {lat['max_ms']:7.1f} ms  (server timestamps, ms resolution; {LIGHT_LOAD_COUNT} at "
          f"~{LIGHT_LOAD_RATE:.0f}/s)")
    if e2e["created_to_started"]:
        q = e2e["created_to_started"]
        print(f"{'    of which created -> started':<34}p50 {q['p50_ms']:7.1f} ms  p99 {q['p99_ms']:7.1f} ms  "
              f"max {q['max_ms']:7.1f} ms")
    s = e2e["submit_rtt"]
    print(f"{'    accept round trip (client)':<34}p50 {s['p50_ms']:7.3f} ms  p99 {s['p99_ms']:7.3f} ms  "
          f"max {s['max_ms']:7.3f} ms")
    print(f"{'(d) sync invoke round trip':<34}p50 {sync_rtt['p50_ms']:7.3f} ms  p99 {sync_rtt['p99_ms']:7.3f} ms  "
          f"max {sync_rtt['max_ms']:7.3f} ms  (client, sequential, keep-alive)")

    wrk_row("(e) queue sends (202)", sends)
    qr = queue_result
    print(f"{'    consumed, batches of 10':<34}{qr['messages_per_s']:>10,.0f} msg/s  ({qr['sent']:,} messages in "
          f"{qr['consume_s']:.2f} s, {qr['dead']} dead; beside async drain {drain['backlog_per_drain_s']:,.0f} "
          f"invocations/s: x{qr['messages_per_s'] / drain['backlog_per_drain_s']:.1f})")

    for r in (sync, accepts, sends):
        for k in ("raw", "started", "ended", "last_body"):
            r.pop(k)
    json.dump({
        "machine": {"cores": os.cpu_count(), "loadavg_before": load_before},
        "duration": DURATION, "connections": CONNECTIONS,
        "sync_invoke": sync, "durable_accepts": accepts, "accepts_over_sync": ratio,
        "aim_accepts_per_s": AIM_ACCEPTS_PER_S, "aim_reached": reached,
        "drain": drain, "light_load": {"count": LIGHT_LOAD_COUNT, "rate_per_s": LIGHT_LOAD_RATE, **e2e},
        "sync_round_trip": sync_rtt,
        "queue_sends": sends, "queue_consumption": queue_result,
    }, open(os.path.join(ROOT, "target/bench-async.json"), "w"), indent=2)
    if not reached:
        print(f"note: below the aim of {AIM_ACCEPTS_PER_S:,} durable accepts/s", file=sys.stderr)


if __name__ == "__main__":
    main()
