"""`generate --backend openai` against a loopback server that takes 50 ms per request.

The server stands in for a serving engine whose latency, not our client, sets the pace; it runs
in a process of its own and counts the requests it holds at once. For each concurrency the
figure is prompts per second over the demo's val split (every prompt one request, K = 3 samples
per harmful question), the client's own time per request at concurrency 1 (wall time per
request less the server's 50 ms: building the body, the image as a data URL, HTTP, parsing,
logging for resume), and the concurrency the client sustained: the mean number of requests the
server held (requests x 50 ms / wall time) and the most it held at once.

    python benchmarks/openai_generation.py [--concurrency 1,8,32] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Endpoint(BaseHTTPRequestHandler):
    """Chat Completions with ``n`` choices after a fixed delay; GET /stats reports what it held."""

    latency = 0.05
    lock = threading.Lock()
    in_flight = 0
    most = 0
    served = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        cls = type(self)
        with cls.lock:
            payload = json.dumps({"served": cls.served, "most_in_flight": cls.most}).encode()
            cls.most = cls.in_flight
        self.reply(payload)

    def do_POST(self):
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with cls.lock:
            cls.in_flight += 1
            cls.most = max(cls.most, cls.in_flight)
        try:
            time.sleep(cls.latency)
            n = body.get("n", 1)
            completion = {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": i,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": f"The picture shows a sample {i} of seed {body.get('seed')}.",
                        },
                    }
                    for i in range(n)
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 10 * n, "total_tokens": 10 * n},
            }
            self.reply(json.dumps(completion).encode())
        finally:
            with cls.lock:
                cls.in_flight -= 1
                cls.served += 1

    def reply(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(latency: float) -> None:
    Endpoint.latency = latency
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    httpd.daemon_threads = True
    httpd.request_queue_size = 256
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return

    from safeeraser.data.demo import make_demo
    from safeeraser.generate.backends import OpenAIBackend
    from safeeraser.generate.predictions import generate_predictions, protocol_settings

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True
    )
    try:
        root = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            make_demo(data)
            rows = []
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                stats(root)  # resets the most-in-flight count
                before = stats(root)["served"]
                backend = OpenAIBackend("bench", base_url=root + "/v1", concurrency=concurrency)
                began = time.perf_counter()
                meta = generate_predictions(
                    "bench",
                    data,
                    "val",
                    Path(tmp) / f"p{concurrency}.json",
                    protocol_settings("published"),
                    backend=backend,
                    progress=False,
                )
                wall = time.perf_counter() - began
                seen = stats(root)
                requests = seen["served"] - before
                rows.append(
                    {
                        "concurrency": concurrency,
                        "prompts": meta["prompts"],
                        "requests": requests,
                        "seconds": round(wall, 2),
                        "prompts_per_second": round(meta["prompts"] / wall, 1),
                        "client_ms_per_request": round(1000 * (wall / requests - args.latency), 1)
                        if concurrency == 1
                        else None,
                        "mean_in_flight": round(requests * args.latency / wall, 1),
                        "most_in_flight": seen["most_in_flight"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.kill()
        server.wait()
    print("| concurrency | prompts | s | prompts/s | client ms/request | mean in flight | most in flight |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        client = "—" if r["client_ms_per_request"] is None else f"{r['client_ms_per_request']:.1f}"
        print(
            f"| {r['concurrency']} | {r['prompts']} | {r['seconds']:.1f} | {r['prompts_per_second']:.1f} | {client} | {r['mean_in_flight']:.1f} | {r['most_in_flight']} |"
        )


if __name__ == "__main__":
    main()
