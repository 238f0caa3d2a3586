#!/usr/bin/env python3
"""`make soak`: SOAK_SECONDS (default 600) of mixed heartbeat, check and auth
traffic over many sessions against the real `session-timeout serve` with a
5 s timeout. Virtual users work for a while (heartbeats, checks, page loads
checked by auth), then go idle while background traffic (auth every 200 ms)
goes on, until the session is refused; then they log in again (a new
cookie). Asserts: no error answers, every expiry on time (the first refusal
within a second after last activity + timeout, never before), resident
memory flat apart from the ended sessions it keeps (about 100 bytes each).
Prints a summary; exit code 1 on any failure.
"""
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/session-timeout")
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
USERS = int(os.environ.get("SOAK_USERS", "200"))
TIMEOUT_S = 5
BASE = "/session-timeout/api/v1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = []
        self.expiries = []  # lateness in seconds of the first refusal after the deadline
        self.early = []
        self.sessions = 0

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                if isinstance(getattr(self, k), list):
                    getattr(self, k).append(v)
                else:
                    setattr(self, k, getattr(self, k) + v)


def user(port, uid, stop, stats):
    rnd = random.Random(uid)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(method, path, cookie, body=None):
        headers = {"Cookie": f"session_id={cookie}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, BASE + path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        stats.add(requests=1)
        return r.status, data

    generation = 0
    while not stop.is_set():
        generation += 1
        cookie = f"soak-{uid}-{generation}-{rnd.getrandbits(64):016x}"
        stats.add(sessions=1)
        last_activity = time.time()
        status, _ = call("GET", "/check", cookie)
        if status != 200:
            stats.add(errors=f"first check {status}")
        # Work: a heartbeat every 1.25 s (the interval for a 5 s timeout),
        # checks and page loads in between.
        work_until = time.time() + rnd.uniform(2, 12)
        while time.time() < work_until and not stop.is_set():
            sent = time.time()
            status, data = call("POST", "/heartbeat", cookie, '{"idle_ms":0}')
            if status == 200 and b'"active"' in data:
                last_activity = sent
            else:
                stats.add(errors=f"heartbeat {status} {data[:80]!r}")
            for _ in range(3):
                status, _ = call("GET", "/auth", cookie)
                if status != 204:
                    stats.add(errors=f"auth while active {status}")
                time.sleep(0.25)
            status, data = call("GET", "/check", cookie)
            if status != 200 or b'"active"' not in data:
                stats.add(errors=f"check while active {status} {data[:80]!r}")
            time.sleep(0.5)
        # Idle: background traffic only, until refused.
        deadline = last_activity + TIMEOUT_S
        while not stop.is_set():
            status, _ = call("GET", "/auth", cookie)
            now = time.time()
            if status == 401:
                late = now - deadline
                if late < -0.05:
                    stats.add(early=late)
                else:
                    stats.add(expiries=late)
                break
            if status != 204:
                stats.add(errors=f"auth while idle {status}")
                break
            if now > deadline + 5:
                stats.add(errors=f"not refused {now - deadline:.1f} s after the deadline")
                break
            time.sleep(0.2)


def main():
    tmp = tempfile.mkdtemp(prefix="st-soak-")
    port = free_port()
    proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{port}", "--db", os.path.join(tmp, "soak.db"),
                             "--timeout", str(TIMEOUT_S), "--session-info-url", "none", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, RUST_LOG="warn"))
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    stats = Stats()
    stop = threading.Event()
    threads = [threading.Thread(target=user, args=(port, i, stop, stats), daemon=True) for i in range(USERS)]
    for t in threads:
        t.start()
    samples = []
    start = time.time()
    try:
        while time.time() - start < SECONDS:
            time.sleep(10)
            samples.append((time.time() - start, rss(proc.pid), stats.sessions, stats.requests))
            print(f"[soak] {samples[-1][0]:5.0f} s  rss {samples[-1][1] / 2**20:6.1f} MiB  sessions {stats.sessions}  "
                  f"requests {stats.requests}  errors {len(stats.errors)}  expiries {len(stats.expiries)}", file=sys.stderr, flush=True)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        proc.terminate()
        proc.wait(10)
    # Memory: compare the second sample with the last, minus what the ended
    # sessions kept in memory account for (about 100 bytes each, generously 200).
    first, last = samples[min(1, len(samples) - 1)], samples[-1]
    growth = last[1] - first[1]
    allowed = (last[2] - first[2]) * 200 + 2 * 2**20
    lateness = sorted(stats.expiries)
    summary = {
        "seconds": round(time.time() - start),
        "users": USERS,
        "requests": stats.requests,
        "requests_per_s": round(stats.requests / (time.time() - start)),
        "sessions": stats.sessions,
        "expiries": len(lateness),
        "expiry_lateness_p50_s": round(lateness[len(lateness) // 2], 3) if lateness else None,
        "expiry_lateness_max_s": round(lateness[-1], 3) if lateness else None,
        "early_expiries": len(stats.early),
        "errors": len(stats.errors),
        "rss_start_mib": round(first[1] / 2**20, 1),
        "rss_end_mib": round(last[1] / 2**20, 1),
        "rss_growth_allowed_mib": round(allowed / 2**20, 1),
    }
    print(json.dumps(summary, indent=2))
    failures = []
    if stats.errors:
        failures.append(f"{len(stats.errors)} error answers, e.g. {stats.errors[:3]}")
    if stats.early:
        failures.append(f"{len(stats.early)} sessions refused before their deadline: {stats.early[:3]}")
    if lateness and lateness[-1] > 1.0:
        failures.append(f"an expiry came {lateness[-1]:.2f} s late (limit 1 s)")
    if not lateness:
        failures.append("no expiry observed")
    if growth > allowed:
        failures.append(f"resident memory grew {growth / 2**20:.1f} MiB, more than the {allowed / 2**20:.1f} MiB the ended sessions explain")
    for f in failures:
        print("SOAK FAILED:", f, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
