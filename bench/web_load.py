"""A bounded load check of the explorer: many /api/decode calls to a real uvicorn server on 127.0.0.1.

The model is the MNIST MLP VAE 784-400-20 (Bernoulli); by default it is randomly initialised and saved
with ``rundir.save_model`` (decoding costs the same as for a trained one; ``--train`` trains one
epoch with ``runs.train_run`` instead). The server is ``vaelab serve RUN`` in its own process, so client
threads and server do not share a GIL. ``--threads`` client threads each send ``--requests`` decode
requests (random z ~ N(0, I), one keep-alive http.client connection each), after one thread sent ``--requests`` alone
(one user dragging on the map). One run prints:

  (a) server start-up seconds (load the model + MNIST test set, encode 5000 test images, PCA),
  (b) HTTP round-trip latency per decode, one client alone and then all threads at once:
      p50 / p90 / p99 / max (ms) and throughput (requests/s),
  (c) the bare in-process decode of one z (model.decode + PNG encoding, 1 torch thread like the server),
      median ms, and (b) p50 / (c),
  (d) the number of non-200 responses and errors (must be 0: the script exits 1 otherwise).

    VAELAB_DATA_DIR=/work/shared/data .venv/bin/python bench/web_load.py [--threads 4] [--requests 100]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch


def make_run(out: Path, data_dir: str | None, train: bool) -> Path:
    from vaelab import rundir
    from vaelab.data import info_dict, load_dataset
    from vaelab.models import build_model

    opts = {"latent_dim": 20, "hidden": (400,), "likelihood": "bernoulli"}
    if train:
        from vaelab.train.run import train_run
        from vaelab.train import TrainConfig

        train_run("vae", "mnist", out, opts, TrainConfig(epochs=1, device="cpu", progress=False), data_dir=data_dir)
        return out
    torch.manual_seed(0)
    info = load_dataset("mnist", "test", data_dir=data_dir).info
    return rundir.save_model(out, build_model("vae", input_shape=info.shape, **opts), data=info_dict(info))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_decode_ms(run: Path, repeats: int = 200) -> float:
    """Median ms of the server's own decode path (model.decode + PNG) called in-process."""
    from vaelab.web import Explorer

    ex = Explorer.__new__(Explorer)  # only the model and rendering: skip the test-set encoding
    from vaelab import rundir

    ex.model, ex.is_image = rundir.load(run), True
    torch.set_num_threads(1)  # as in the server (vaelab serve --threads 1)
    z = torch.randn(repeats, 20).tolist()
    times = []
    for row in z:
        t0 = time.perf_counter()
        ex.decode([row])
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def client(base: str, n: int, seed: int, latencies: list[float], failures: list[str]) -> None:
    """Send n decode requests over one keep-alive connection (stdlib http.client: little client overhead)."""
    rng = np.random.default_rng(seed)
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.connect()  # http.client sends headers and body in two writes: without TCP_NODELAY (which
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # browsers set) Nagle adds ~40 ms
    try:
        for _ in range(n):
            body = json.dumps({"z": rng.standard_normal(20).round(4).tolist()})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except OSError as e:
                failures.append(repr(e))
                break
            latencies.append(time.perf_counter() - t0)
            if r.status != 200 or b'"image"' not in data:
                failures.append(f"{r.status}: {data[:200]!r}")
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--requests", type=int, default=100, help="decode requests per thread")
    ap.add_argument("--train", action="store_true", help="train 1 epoch instead of a random-init model")
    args = ap.parse_args()
    if not 1 <= args.threads <= 32 or not 1 <= args.requests <= 2000:
        ap.error("allowed: --threads 1..32, --requests 1..2000 (this is a bounded check)")
    data_dir = os.environ.get("VAELAB_DATA_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "mnist-vae", data_dir, args.train)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-c", "from vaelab.cli import main; main()", "serve", str(run), "--port", str(port)]
        t0 = time.perf_counter()
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while True:
                if server.poll() is not None:
                    print("server exited:", server.stderr.read() if server.stderr else "", file=sys.stderr)
                    return 1
                try:
                    if httpx.get(base + "/api/info", timeout=5).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
                if time.perf_counter() - t0 > 120:
                    print("server did not start within 120 s", file=sys.stderr)
                    return 1
            startup = time.perf_counter() - t0
            failures: list[str] = []
            client(base, 20, 98, [], failures)  # warm-up (first-call allocations), not timed
            single: list[float] = []
            client(base, args.requests, 99, single, failures)  # one user dragging: sequential requests
            latencies: list[float] = []
            threads = [threading.Thread(target=client, args=(base, args.requests, k, latencies, failures))
                       for k in range(args.threads)]
            t1 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t1
            alive = server.poll() is None
        finally:
            server.terminate()
            server.wait(10)
        bare = bare_decode_ms(run)
    ms, one = np.array(latencies) * 1e3, np.array(single) * 1e3
    total = args.threads * args.requests + args.requests  # warm-up failures count too
    print(f"model: MNIST MLP VAE 784-400-20 ({'1 epoch' if args.train else 'random init'}); "
          f"server torch threads 1 (vaelab serve default), cpu count {os.cpu_count()}")
    print(f"(a) server start-up: {startup:.2f} s")
    print(f"(b) {len(one)} sequential decodes (1 client): p50 {np.percentile(one, 50):.2f} ms, "
          f"p99 {np.percentile(one, 99):.2f} ms")
    print(f"(b) {len(ms)} decodes from {args.threads} threads: p50 {np.percentile(ms, 50):.2f} ms, "
          f"p90 {np.percentile(ms, 90):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.2f} ms; "
          f"{len(ms) / wall:.0f} requests/s")
    print(f"(c) bare in-process decode + PNG: {bare:.3f} ms; HTTP p50 / bare = {np.percentile(ms, 50) / bare:.1f}x")
    print(f"(d) errors: {len(failures)} of {total}; server alive after the load: {alive}")
    for f in failures[:5]:
        print("   ", f)
    return 0 if not failures and alive and len(ms) + len(one) == total else 1


if __name__ == "__main__":
    sys.exit(main())
