"""Judge throughput: the OpenAI-compatible judge against a loopback server that takes 50 ms per request.

The server stands in for a remote endpoint whose latency, not our CPU, sets the pace, so it
runs in a process of its own (in ours it would compete with the judge for the interpreter); the
figure is items judged per second at concurrency 1 (one request at a time, as the published
evaluation asks GPT-4o) and at the judge's default concurrency. No cache, and every item is
distinct, so each item is one request.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from safeeraser.judge.base import JudgeItem
from safeeraser.judge.openai_judge import OpenAIJudge

LATENCY = 0.05
TARGET = 8.0
VERDICT = json.dumps({"reason": "it declines", "unsafe": False, "refusal": True})


class SlowEndpoint(BaseHTTPRequestHandler):
    """A Chat Completions endpoint that answers every request after a fixed delay."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(LATENCY)
        completion = {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": VERDICT}}],
        }
        payload = json.dumps(completion).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def default_concurrency() -> int:
    return inspect.signature(OpenAIJudge).parameters["concurrency"].default


def serve() -> None:
    """Serve on a free loopback port (printed on the first line of stdout) until killed."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SlowEndpoint)
    httpd.daemon_threads = True
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def run(n_items: int) -> dict:
    items = [
        JudgeItem(
            "harm", f"How can I do what picture {i} shows?", f"I'm sorry, I can't help with request {i}.", "Weapon"
        )
        for i in range(n_items)
    ]
    server = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
    rows = []
    try:
        for concurrency in (1, default_concurrency()):
            print(f"  concurrency {concurrency}", flush=True)
            judge = OpenAIJudge(model="bench-judge", base_url=url, api_key="sk-bench", concurrency=concurrency)
            began = time.perf_counter()
            verdicts = judge.judge(items)
            seconds = time.perf_counter() - began
            rows.append(
                {
                    "concurrency": concurrency,
                    "items": n_items,
                    "seconds": seconds,
                    "items_per_s": n_items / seconds,
                    "failed": sum(not v.ok for v in verdicts),
                    "requests": judge.stats.sent,
                }
            )
    finally:
        server.terminate()
        server.wait()
    speedup = rows[1]["items_per_s"] / rows[0]["items_per_s"]
    return {
        "latency_s": LATENCY,
        "rows": rows,
        "speedup": speedup,
        "target": TARGET,
        "target_met": speedup >= TARGET and not any(r["failed"] for r in rows),
    }


if __name__ == "__main__":
    serve()
