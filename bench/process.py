#!/usr/bin/env python3
"""Process functions benchmark: the Rust (lambda_runtime) and Python
(awslambdaric) fixtures through nimbus, beside the same handlers with no
platform in between.

Measures, in one run on one machine:
  1. cold start: a new function per run (so its first call is cold); the
     first GET through the gateway, client-side, and the node's `init_ms`
     from the invocation log; beside it, the runtime started bare (exec to
     its first GET /next on a stub Runtime API, no sandbox, no node);
  2. warm latency: wrk at 1 connection against max_concurrency = 1 and at 8
     connections against max_concurrency = 8, beside the ceiling: for Rust
     bench/lambda-baseline (the fixture's handler logic behind bare hyper),
     for Python bench/lambda-baseline/baseline.py (app.handler behind a
     minimal asyncio server, awslambdaric's own marshalling and context).
Prints nimbus beside the baseline as a ratio and as added microseconds,
with the CPU time each side spent per request, and writes the raw figures
to target/bench-process.json. Asserts no timing. See bench/README.md.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from harness import ROOT, deploy, free_port, nimbus_server, sh, start, stop, to_ms

BASELINE_RUST = os.path.join(ROOT, "target/release/lambda-baseline")
BASELINE_PY = os.path.join(ROOT, "bench/lambda-baseline/baseline.py")
FIXTURES = os.path.join(ROOT, "target/test-programs/native")
DURATION = os.environ.get("BENCH_DURATION", "10s")
COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "10"))
CONCURRENCY = [1, 8]
KINDS = ["rust", "python"]
AIM_COLD_RUST_MS = 20.0
AIM_WARM_OVERHEAD_US = 300.0


def python_with_ric():
    out = subprocess.run([sys.executable, "-c", "import awslambdaric, sys; print(sys.executable)"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"python3 cannot import awslambdaric (pip install awslambdaric==4.2.2):\n{out.stderr}")
    return out.stdout.strip()


PYTHON = python_with_ric()
COMMAND = {"rust": ["./bootstrap"], "python": [PYTHON, "-m", "awslambdaric", "app.handler"]}
# What each fixture answers on <route>/http.
EXPECTED = {"rust": (200, b'{"from":"rust"}'), "python": (201, b"binary\x00ok")}


def function_dir(work, kind, name, route, max_concurrency, extra=""):
    """A copy of the staged fixture plus its nimbus.toml."""
    d = os.path.join(work, name)
    shutil.copytree(os.path.join(FIXTURES, kind), d, symlinks=True)
    command = ", ".join(json.dumps(a) for a in COMMAND[kind])
    handler = 'handler = "app.handler"\n' if kind == "python" else ""
    with open(os.path.join(d, "nimbus.toml"), "w") as f:
        f.write(f'name = "{name}"\nruntime = "process"\ncode = "."\ncommand = [{command}]\n{handler}'
                f"max_concurrency = {max_concurrency}\nmemory_mb = 256\ntimeout_ms = 3000\n{extra}"
                f'[[http]]\nroute = "{route}/*"\n')
    return d


def get_raw(port, path):
    """One GET on a new connection: (status, body, ms)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    ms = (time.perf_counter() - started) * 1000
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body, ms


def api(api_port, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{api_port}{path}", method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def check(kind, status, body, where):
    want_status, want_body = EXPECTED[kind]
    if status != want_status or want_body not in body:
        raise SystemExit(f"{where}: expected {want_status} with {want_body!r}, got {status}: {body[:300]!r}")


def wrk(url, connections):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{DURATION}", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {m.group(1): to_ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if failed or socket_errors:
        raise SystemExit(f"{url}: failures under load:\n{out}")
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)
    return {"rps": rps, "p50_ms": pct["50"], "p99_ms": pct["99"], "max_ms": to_ms(m.group(1), m.group(2)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1))}


def children(pid):
    """The live child processes of pid, whichever of its threads started them."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            pass
    return found


def cpu_seconds(pid, descendants=True):
    """CPU time (user + system, all threads) used so far by pid and, unless
    told otherwise, its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        p = pending.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            if descendants:
                pending += children(p)
        except (FileNotFoundError, ProcessLookupError):
            pass  # ended meanwhile
    return total


def measured(url, c, groups):
    """wrk at c connections, with the CPU time each group of processes
    (name: (pids, with descendants?)) used during the run, per request (µs)."""
    def used():
        return {k: sum(cpu_seconds(p, d) for p in pids) for k, (pids, d) in groups.items()}
    before = used()
    r = wrk(url, c)
    after = used()
    r["cpu_us_per_request"] = {k: (after[k] - before[k]) * 1e6 / r["requests"] for k in groups}
    return r


def bare_start_ms(kind):
    """Exec to the runtime's first GET /next on a stub Runtime API: the
    runtime's own start, with no sandbox, no cgroup, no node."""
    code = os.path.join(FIXTURES, kind)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        port = listener.getsockname()[1]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}", "AWS_LAMBDA_FUNCTION_NAME": "bare",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
               "_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": code}
        started = time.perf_counter()
        proc = subprocess.Popen(COMMAND[kind], cwd=code, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                ms = (time.perf_counter() - started) * 1000
                if b"/runtime/invocation/next" not in data:
                    raise SystemExit(f"{kind}: the runtime's first call was not GET /next: {data[:200]!r}")
        finally:
            proc.kill()
            proc.wait()
    return ms


def cold_starts(work, port, api_port):
    runs = {kind: [] for kind in KINDS}
    for i in range(COLD_RUNS):
        for kind in KINDS:
            name = f"cold-{kind}-{i}"
            deploy(api_port, function_dir(work, kind, name, f"/{name}", 1))
            # A cold start follows idleness; what the kernel charges for one
            # (an RCU grace period on cgroup v1) depends on how busy it was.
            time.sleep(0.5)
            status, body, first_ms = get_raw(port, f"/{name}/http")
            check(kind, status, body, f"{name} (cold)")
            status, body, warm_ms = get_raw(port, f"/{name}/http")
            check(kind, status, body, f"{name} (warm)")
            entries = api(api_port, f"/v1/functions/{name}/logs?limit=2")["entries"]
            init = [e["init_ms"] for e in entries if e.get("init_ms") is not None]
            if len(init) != 1:
                raise SystemExit(f"{name}: expected one cold start in the log, got {entries}")
            runs[kind].append({"first_ms": first_ms, "init_ms": init[0], "second_ms": warm_ms,
                               "bare_ms": bare_start_ms(kind)})
            api(api_port, f"/v1/functions/{name}", method="DELETE")
    return runs


def warm_up(port, name, kind, c):
    """Brings the pool to exactly c warm instances: c requests that each
    hold an instance for 300 ms at once, then a second of c keep-alive
    clients. No request is abandoned: a client that disconnects mid-request
    costs nimbus its instance (see docs/performance.md), so wrk is not used
    to warm up."""
    def hold():
        status, body, _ = get_raw(port, f"/{name}/sleep?ms=300")
        if status != 200:
            raise SystemExit(f"{name}: warm-up got {status}: {body[:300]!r}")

    def loop(until):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < until:
            conn.request("GET", f"/{name}/http")
            r = conn.getresponse()
            check(kind, r.status, r.read(), f"{name} warm-up")
        conn.close()

    for target, args in ((hold, ()), (loop, (time.perf_counter() + 1.0,))):
        threads = [threading.Thread(target=target, args=args) for _ in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def cold_start_count(api_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^nimbus_cold_start_duration_seconds_count\S* (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def with_baseline(kind, workers):
    """Starts the ceiling for `kind`; returns (process, port)."""
    port = free_port()
    if kind == "rust":
        proc, _ = start([BASELINE_RUST, f"127.0.0.1:{port}"], r"listening")
    else:
        proc, _ = start([PYTHON, BASELINE_PY, str(port), os.path.join(FIXTURES, "python"), str(workers)],
                        r"listening")
    return proc, port


def warm(work, nimbus, port, api_port):
    results = {}
    for kind in KINDS:
        for c in CONCURRENCY:
            # (a) the ceiling: the same handler, no platform.
            proc, base_port = with_baseline(kind, c)
            try:
                status, body, _ = get_raw(base_port, f"/{kind}/http")
                check(kind, status, body, f"{kind} baseline")
                base = measured(f"http://127.0.0.1:{base_port}/{kind}/http", c, {"server": ([proc.pid], True)})
            finally:
                stop(proc)
            # (b) nimbus: max_concurrency = c, warmed up so the pool holds c
            # instances before the measured run.
            name = f"warm-{kind}-{c}"
            deploy(api_port, function_dir(work, kind, name, f"/{name}", c))
            url = f"http://127.0.0.1:{port}/{name}/http"
            warm_up(port, name, kind, c)
            before = api(api_port, f"/v1/functions/{name}")
            if before["instances"] != {"alive": c, "idle": c}:
                raise SystemExit(f"{name}: warm-up left {before['instances']}, not {c} idle instances")
            cold_before = cold_start_count(api_port)
            instances = children(nimbus.pid)
            result = measured(url, c, {"node": ([nimbus.pid], False), "function": (instances, True)})
            cold_during = cold_start_count(api_port) - cold_before
            # wrk ends by closing its connections with requests in flight.
            time.sleep(0.5)
            after = api(api_port, f"/v1/functions/{name}")
            api(api_port, f"/v1/functions/{name}", method="DELETE")
            results[f"{kind}/c{c}"] = {
                "baseline": base, "nimbus": result, "cold_starts_during_run": cold_during,
                "instances_before": before["instances"],
                "after_run": {"instances": after["instances"], "in_flight": after.get("in_flight")},
            }
    return results


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine():
    """What the figures depend on besides nimbus: cores, kernel, and whether
    the scheduler groups each session (every instance starts one) apart."""
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled") as f:
            autogroup = f.read().strip() == "1"
    except FileNotFoundError:
        autogroup = False
    return {"cores": os.cpu_count(), "kernel": os.uname().release, "sched_autogroup": autogroup}


def report(cold, warm_results):
    m = machine()
    print()
    print(f"machine: {m['cores']} cores, Linux {m['kernel']}, sched autogroup {'on' if m['sched_autogroup'] else 'off'}; "
          f"wrk -t1, {DURATION} per run; same machine, same run")
    print()
    print(f"cold start: median of {COLD_RUNS} new functions (min-max)")
    print(f"{'':<8}{'first call (client)':>26}{'init_ms (node)':>26}{'bare runtime start':>26}{'2nd call':>10}")
    for kind in KINDS:
        runs = cold[kind]
        cells = []
        for key in ("first_ms", "init_ms", "bare_ms"):
            xs = [r[key] for r in runs]
            cells.append(f"{median(xs):.2f} ms ({min(xs):.1f}-{max(xs):.1f})")
        second = f"{median([r['second_ms'] for r in runs]):.2f} ms"
        print(f"{kind:<8}" + "".join(f"{c:>26}" for c in cells) + f"{second:>10}")
    rust_cold = median([r["first_ms"] for r in cold["rust"]])
    verdict = "reached" if rust_cold < AIM_COLD_RUST_MS else "NOT reached"
    print(f"aim: Rust cold start < {AIM_COLD_RUST_MS:.0f} ms: {verdict} (median first call {rust_cold:.2f} ms, "
          f"init {median([r['init_ms'] for r in cold['rust']]):.2f} ms)")
    print()
    print("warm: wrk -c C against max_concurrency = C; (a) the same handler with no platform, (b) nimbus")
    print(f"{'':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}   CPU µs/request")
    for key, r in warm_results.items():
        b, n = r["baseline"], r["nimbus"]
        r["ratio_rps"] = n["rps"] / b["rps"]
        r["ratio_p50"] = n["p50_ms"] / b["p50_ms"]
        r["added_p50_us"] = (n["p50_ms"] - b["p50_ms"]) * 1000
        r["added_p99_us"] = (n["p99_ms"] - b["p99_ms"]) * 1000
        for label, x in ((f"{key} (a) baseline", b), (f"{key} (b) nimbus", n)):
            cpu = ", ".join(f"{k} {v:.0f}" for k, v in x["cpu_us_per_request"].items())
            print(f"{label:<22}{x['rps']:>9,.0f}{x['p50_ms']:>9.3f}{x['p99_ms']:>9.3f}{x['max_ms']:>9.2f}   {cpu}")
        print(f"{'':<22}b/a: req/s x{r['ratio_rps']:.2f}, p50 x{r['ratio_p50']:.2f}; added p50 "
              f"{r['added_p50_us']:+.0f} µs, p99 {r['added_p99_us']:+.0f} µs; "
              f"cold starts during the run: {r['cold_starts_during_run']}")
    for c in CONCURRENCY:
        worst = max(r["added_p50_us"] for k, r in warm_results.items() if k.endswith(f"/c{c}"))
        verdict = "reached" if worst < AIM_WARM_OVERHEAD_US else "NOT reached"
        print(f"aim: warm overhead < {AIM_WARM_OVERHEAD_US:.0f} µs p50 at c={c}: {verdict} (worst {worst:+.0f} µs)")
    print("p99 and max are wrk's: wrk corrects for coordinated omission, so one long stall weighs on p99.")


def main():
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print("building release binaries and the native fixtures ...", flush=True)
    sh("cargo", "build", "--quiet", "--release", "-p", "nimbus", "-p", "lambda-baseline", cwd=ROOT)
    sh("bash", os.path.join(ROOT, "test-programs/build-native.sh"), FIXTURES, stderr=subprocess.DEVNULL)

    # Data under target/ (not /tmp, which may be a tmpfs), as async.py does.
    os.makedirs(os.path.join(ROOT, "target"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-process-", dir=os.path.join(ROOT, "target"))
    port, api_port = free_port(), free_port()
    proc, _ = nimbus_server(os.path.join(work, "data"), port, api_port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        print(f"cold starts: {COLD_RUNS} runs each ...", flush=True)
        cold = cold_starts(work, port, api_port)
        print("warm runs ...", flush=True)
        warm_results = warm(work, proc, port, api_port)
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    report(cold, warm_results)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    json.dump({"commit": commit, "machine": machine(), "duration": DURATION, "cold_runs": COLD_RUNS,
               "cold": cold, "cold_median": {k: {key: median([r[key] for r in v])
                                                 for key in ("first_ms", "init_ms", "bare_ms", "second_ms")}
                                             for k, v in cold.items()},
               "warm": warm_results},
              open(os.path.join(ROOT, "target/bench-process.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
