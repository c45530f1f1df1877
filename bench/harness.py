"""Helpers shared by the benchmarks: paths, ports, and starting, stopping
and deploying to a release-built nimbus node."""
import os
import re
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NIMBUS = os.path.join(ROOT, "target/release/nimbus")


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_ms(value, unit):
    """A wrk latency figure in milliseconds."""
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start(args, ready_pattern):
    """Starts a server and waits for the stdout line matching ready_pattern."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if re.search(ready_pattern, line):
            return proc, line
    proc.wait()
    raise SystemExit(f"{args[0]} exited (status {proc.returncode}) before it was ready")


def stop(proc):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def nimbus_server(data_dir, port, api_port):
    return start([NIMBUS, "server", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
                  "--api-listen", f"127.0.0.1:{api_port}"], r"^nimbus: ready")


def deploy(api_port, path):
    env = dict(os.environ, NIMBUS_API=f"http://127.0.0.1:{api_port}")
    return subprocess.run([NIMBUS, "deploy", path], check=True, capture_output=True, text=True, env=env).stdout
