"""`dlkit serve` against the wrapper users write by hand, in one run: requests per second and p50/p99 latency at
concurrency 1, 8 and 32 on a sample model, for dlkit serve with batching, dlkit serve without (--max-batch 1), and
bench/hand_wrapper.py (starlette + onnxruntime, one session.run per request, one process), and dlkit serve
--workers N (N processes on the port, each batching its own connections). Every server gets the same JSON
infer request of one sample over keep-alive connections, from wrk (Debian's package) when it is installed, else
from client threads in this process (which then limit the rate themselves).

    python bench/serve.py [--model mlp_digits] [--workers 2]   # writes bench/results/serve.json and .md

Targets (issue 16): at concurrency 32 on the sample MLP, batched throughput >= 3x the wrapper's; at concurrency 1,
p50 latency <= 1.1x the wrapper's. A row with the binary tensor extension (what tritonclient sends) shows what the
JSON parsing, which both servers pay per request, costs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd, port):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def _load(port, name, bodies, concurrency, total, binary=False):
    latencies, lock, counter = [], threading.Lock(), iter(range(total))

    def worker(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            start = time.perf_counter()
            body = bodies[i % len(bodies)]
            headers = ({"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(body[1])}
                       if binary else {"Content-Type": "application/json"})
            conn.request("POST", f"/v2/models/{name}/infer", body=body[0] if binary else body, headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"rps": round(total / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def _wrk(port, name, body, binary, concurrency, seconds) -> dict:
    """The same load from wrk (a C load generator, another process): the client is not what limits the rate."""
    import re
    import shutil

    headers = ({"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(body[1])}
               if binary else {"Content-Type": "application/json"})
    data = body[0] if binary else body
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "body.bin"
        blob.write_bytes(data)
        script = Path(tmp) / "post.lua"
        script.write_text('wrk.method = "POST"\n' + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
                          + f'local f = io.open("{blob}", "rb"); wrk.body = f:read("*a"); f:close()\n')
        out = subprocess.run([shutil.which("wrk"), "-t", "1", "-c", str(concurrency), "-d", f"{seconds}s", "--latency",
                              "-s", str(script), f"http://127.0.0.1:{port}/v2/models/{name}/infer"],
                             capture_output=True, text=True, check=True).stdout

    def ms(label):
        value, unit = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", out, re.M).groups()
        return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return {"rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), 1), "p50_ms": ms("50"),
            "p99_ms": ms("99")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp_digits")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serve")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per cell with wrk (when it is installed)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="worker processes of the --workers row [default: the logical CPUs]")
    args = parser.parse_args()
    import dlkit
    from dlkit_runtime import cpu
    from sample_models import architectures  # noqa: F401
    from sample_models import datasets

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = dlkit.export(ROOT / "sample_models" / "trained" / f"{args.model}.keras", work / f"{args.model}.onnx").path
    images, _ = datasets.load_mnist("test", shipped_only=True)
    x = datasets.as_cnn_input(images[:64]) if "cnn" in args.model else datasets.as_mlp_input(images[:64])
    name = Path(model).stem
    input_name = "pixels"
    bodies = [json.dumps({"inputs": [{"name": input_name, "shape": [1, *x.shape[1:]], "datatype": "FP32",
                                      "data": row.reshape(-1).tolist()}]}).encode() for row in x]
    binary = []  # the binary tensor extension, as tritonclient sends by default
    for row in x:
        head = json.dumps({"inputs": [{"name": input_name, "shape": [1, *x.shape[1:]], "datatype": "FP32",
                                       "parameters": {"binary_data_size": row.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        binary.append((head + np.ascontiguousarray(row).tobytes(), len(head)))
    servers = {
        "dlkit serve (batching)": [sys.executable, "-m", "dlkit", "serve", model],
        "dlkit serve --max-batch 1": [sys.executable, "-m", "dlkit", "serve", model, "--max-batch", "1"],
        "dlkit serve, binary requests (tritonclient's default)": [sys.executable, "-m", "dlkit", "serve", model],
        f"dlkit serve --workers {args.workers}": [sys.executable, "-m", "dlkit", "serve", model, "--workers",
                                                 str(args.workers)],
        "hand-written wrapper": [sys.executable, str(ROOT / "bench" / "hand_wrapper.py"), model],
    }
    rows = []
    for label, cmd in servers.items():
        port = _free_port()
        full = cmd + (["--port", str(port)] if "dlkit" in cmd[2] else [str(port)])
        proc = _start(full, port)
        try:
            use_binary = "binary" in label
            data = binary if use_binary else bodies
            _load(port, name, data, 4, 200, use_binary)  # warm-up
            for concurrency in (1, 8, 32):
                import shutil

                figures = (_wrk(port, name, data[0], use_binary, concurrency, args.seconds) if shutil.which("wrk")
                           else _load(port, name, data, concurrency, args.requests, use_binary))
                rows.append({"server": label, "concurrency": concurrency, **figures})
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result = {"model": args.model, "host": cpu.host().to_dict(), "cores": os.cpu_count(), "requests": args.requests,
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    peer = {r["concurrency"]: r for r in rows if r["server"] == "hand-written wrapper"}
    lines = [f"serve bench: {args.model}, one-sample requests, {args.seconds} s per cell from wrk (else {args.requests} "
             f"requests from threads), {os.cpu_count()} cores "
             f"({result['host']['family']} {result['host']['model']}); clients share the machine", "",
             "| server | concurrency | req/s | p50 ms | p99 ms | req/s vs wrapper | p50 vs wrapper |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        p = peer[r["concurrency"]]
        lines.append(f"| {r['server']} | {r['concurrency']} | {r['rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                     f"{r['rps'] / p['rps']:.2f}x | {r['p50_ms'] / p['p50_ms']:.2f}x |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
