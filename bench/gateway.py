#!/usr/bin/env python3
"""Gateway benchmark: nimbus beside its ceiling and beside `wasmtime serve`.

Measures, in one run on one machine, with wrk at 1 and 32 connections:
  (a) hyper-hello, a bare hyper server: the ceiling;
  (b) the hello example through the nimbus gateway (fresh instance per request);
  (c) `wasmtime serve` on the very same component, if `wasmtime` is installed.
Prints req/s, p50 and p99, and the ratios b/a and b/c; then the time from
`nimbus deploy` returning to the first 200, and restart-to-ready with 100
functions deployed. See bench/README.md.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from harness import NIMBUS, ROOT, deploy, free_port, nimbus_server, sh, start, stop, to_ms
HYPER = os.path.join(ROOT, "target/release/hyper-hello")
HELLO = os.path.join(ROOT, "examples/hello/hello.wasm")
DURATION = os.environ.get("BENCH_DURATION", "10s")
CONNECTIONS = [1, 32]






def wait_http(url, timeout=30.0):
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.005)
    raise SystemExit(f"{url} did not answer within {timeout}s")




def wrk(url, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}", "--latency", url],
        check=True, capture_output=True, text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {m.group(1): to_ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} failed responses under load:\n{out}")
    return {"rps": rps, "p50_ms": pct.get("50"), "p99_ms": pct.get("99")}










def first_response_after(url):
    """Polls url with raw HTTP/1.1 until a 200; returns ms taken."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    started = time.perf_counter()
    while True:
        with socket.create_connection((host, int(port))) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                return (time.perf_counter() - started) * 1000


def row(name, results):
    cells = []
    for c in CONNECTIONS:
        r = results[c]
        cells.append(f"{r['rps']:>10,.0f} req/s  p50 {r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms")
    print(f"{name:<22}" + "  |  ".join(cells))


def main():
    for tool in ["wrk"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    print("building release binaries and the hello example ...", flush=True)
    sh("cargo", "build", "--quiet", "--release", "-p", "nimbus", "-p", "hyper-hello", cwd=ROOT)
    sh(os.path.join(ROOT, "examples/hello/build.sh"), stdout=subprocess.DEVNULL)
    results = {}

    # (a) the ceiling
    port = free_port()
    proc, _ = start([HYPER, f"127.0.0.1:{port}"], r"listening")
    results["hyper"] = {c: wrk(f"http://127.0.0.1:{port}/hello", c) for c in CONNECTIONS}
    stop(proc)

    # (b) nimbus
    work = tempfile.mkdtemp(prefix="nimbus-bench-")
    port, api_port = free_port(), free_port()
    proc, _ = nimbus_server(os.path.join(work, "data"), port, api_port)
    deploy(api_port, os.path.join(ROOT, "examples/hello"))
    deploy_to_first = first_response_after(f"http://127.0.0.1:{port}/hello")
    results["nimbus"] = {c: wrk(f"http://127.0.0.1:{port}/hello", c) for c in CONNECTIONS}

    # 100 functions, then restart-to-ready
    for i in range(99):
        d = os.path.join(work, f"f{i}")
        os.makedirs(d)
        shutil.copy(HELLO, os.path.join(d, "hello.wasm"))
        with open(os.path.join(d, "nimbus.toml"), "w") as f:
            f.write(f'name = "hello-{i}"\nruntime = "wasm"\ncomponent = "hello.wasm"\n[[http]]\nroute = "/hello-{i}"\n')
        deploy(api_port, d)
    stop(proc)
    started = time.perf_counter()
    proc, ready_line = nimbus_server(os.path.join(work, "data"), port, api_port)
    wait_http(f"http://127.0.0.1:{port}/hello-98")
    restart_to_ready = (time.perf_counter() - started) * 1000
    stop(proc)
    shutil.rmtree(work, ignore_errors=True)

    # (c) wasmtime serve, on the very same component
    wasmtime = shutil.which("wasmtime")
    if wasmtime:
        port = free_port()
        proc = subprocess.Popen([wasmtime, "serve", "-S", "cli=y", "--addr", f"127.0.0.1:{port}", HELLO],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{port}/hello")
        results["wasmtime"] = {c: wrk(f"http://127.0.0.1:{port}/hello", c) for c in CONNECTIONS}
        version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout.strip()
        stop(proc)

    print()
    print(f"machine: {os.cpu_count()} cores; wrk -t1, {DURATION} per run; same machine, same run")
    print(f"{'':<22}" + "  |  ".join(f"{'c=' + str(c):<45}" for c in CONNECTIONS))
    row("(a) hyper (ceiling)", results["hyper"])
    row("(b) nimbus gateway", results["nimbus"])
    if "wasmtime" in results:
        row(f"(c) {version}"[:22], results["wasmtime"])
    for c in CONNECTIONS:
        b = results["nimbus"][c]["rps"]
        line = f"c={c}: b/a = {b / results['hyper'][c]['rps']:.3f}"
        if "wasmtime" in results:
            line += f"   b/c = {b / results['wasmtime'][c]['rps']:.2f}"
        print(line)
    if "wasmtime" not in results:
        print("(c) skipped: `wasmtime` is not installed (cargo install wasmtime-cli)")
    print(f"deploy returned -> first 200: {deploy_to_first:.2f} ms")
    print(f"restart -> ready with 100 functions: {restart_to_ready:.1f} ms  ({ready_line.strip()})")
    json.dump({"results": results, "deploy_to_first_ms": deploy_to_first, "restart_to_ready_ms": restart_to_ready},
              open(os.path.join(ROOT, "target/bench-gateway.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
