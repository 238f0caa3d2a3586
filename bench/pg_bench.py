"""The PostgreSQL part of `make bench` (called by bench.py): sidecar replicas
on a throwaway PostgreSQL cluster (scripts/pg-throwaway.sh), against the same
actix-web 204 baseline, interleaved in rounds:

- auth and heartbeat through 1 replica (wrk straight to it), and through 3
  replicas behind nginx round-robin (one nginx worker; the machine's cores are
  shared by nginx, the 3 replicas, PostgreSQL and wrk);
- PostgreSQL commits per second per replica under full heartbeat load;
- how long an ending takes to be refused by every other replica (logout
  through one, polled on the two others every 2 ms), p50 and p99.
"""
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

PG_SESSIONS = int(os.environ.get("BENCH_PG_SESSIONS", "10000"))
ENDINGS = int(os.environ.get("BENCH_PG_ENDINGS", "200"))


def start_proxy(b, tmp, port, upstreams, name):
    conf = os.path.join(tmp, f"{name}.conf")
    servers = "\n    ".join(f"server {u};" for u in upstreams)
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/{name}-body; proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi; uwsgi_temp_path {tmp}/{name}-uwsgi; scgi_temp_path {tmp}/{name}-scgi;
  upstream session_timeout {{
    {servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_pass http://session_timeout;
    }}
  }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return b.Server(name, [nginx, "-p", tmp, "-c", conf, "-g", "daemon off;"], None)


def http_status(url, method="GET", cookie=None, body=None):
    req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
    if cookie:
        req.add_header("Cookie", f"session_id={cookie}")
    if body:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ending_visibility(replicas):
    """Logout through one replica; ms until each other replica refuses it."""
    took = []
    for i in range(ENDINGS):
        cookie = f"ending-{i}"
        for r in replicas:
            http_status(f"{r}/auth", cookie=cookie)
        via = replicas[i % len(replicas)]
        origin = via.split("/session-timeout")[0]
        req = urllib.request.Request(f"{via}/logout", method="POST", data=b"{}")
        req.add_header("Cookie", f"session_id={cookie}")
        req.add_header("Content-Type", "application/json")
        req.add_header("Origin", origin)
        urllib.request.urlopen(req, timeout=5).read()
        t0 = time.monotonic()
        pending = [r for r in replicas if r != via]
        while pending:
            pending = [r for r in pending if http_status(f"{r}/auth", cookie=cookie) != 401]
            if pending:
                if time.monotonic() - t0 > 5:
                    raise RuntimeError(f"an ending was not seen by every replica within 5 s ({cookie})")
                time.sleep(0.002)
        took.append((time.monotonic() - t0) * 1000)
    took.sort()
    return {"p50_ms": statistics.median(took), "p99_ms": took[max(0, int(len(took) * 0.99) - 1)], "max_ms": took[-1], "n": len(took)}


def pg_bench(b):
    script = os.path.join(b.ROOT, "scripts/pg-throwaway.sh")
    tmp = tempfile.mkdtemp(prefix="st-bench-pg-")
    procs = []
    try:
        url = subprocess.run([script, "start", os.path.join(tmp, "pg"), str(b.free_port())],
                             check=True, capture_output=True, text=True).stdout.strip()
        secret = os.path.join(tmp, "secret")
        with open(secret, "w") as f:
            f.write(os.urandom(32).hex())
        actix_port = b.free_port()
        actix = b.Server("actix", [os.path.join(b.EXAMPLES, "bench_baseline"), f"127.0.0.1:{actix_port}", "1"], f"http://127.0.0.1:{actix_port}/")
        procs.append(actix)
        replicas = []
        for i in range(3):
            port = b.free_port()
            base = f"http://127.0.0.1:{port}"
            srv = b.Server(f"replica{i}", [b.BIN, "serve", "--bind", f"127.0.0.1:{port}", "--database-url", url,
                                           "--secret-file", secret, "--timeout", "86400", "--session-info-url", "none",
                                           "--workers", "1"],
                           f"{base}/session-timeout/healthz", env=dict(os.environ, RUST_LOG="warn"))
            procs.append(srv)
            replicas.append((srv, base))
        proxy_port = b.free_port()
        proxy = start_proxy(b, tmp, proxy_port, [base.split("//")[1] for _, base in replicas], "nginx-rr")
        procs.append(proxy)
        # The same nginx hop in front of the baseline, for the 3-replica rows.
        proxied_port = b.free_port()
        proxied = start_proxy(b, tmp, proxied_port, [f"127.0.0.1:{actix_port}"], "nginx-actix")
        procs.append(proxied)
        b.wait_http(f"http://127.0.0.1:{proxied_port}/")
        b.wait_http(f"http://127.0.0.1:{proxy_port}/session-timeout/healthz")
        one = f"{replicas[0][1]}/session-timeout/api/v1"
        three = f"http://127.0.0.1:{proxy_port}/session-timeout/api/v1"
        # Every session met once by every replica (first sight reads the
        # database): the figures are for known sessions, as in production.
        b.log(f"warming {PG_SESSIONS} sessions on 3 replicas")
        for _, base in replicas:
            b.wrk(f"{base}/session-timeout/api/v1/auth", PG_SESSIONS)
        hb = {"method": "POST", "body": '{"idle_ms":0}', "allow_429": True}
        targets = [
            ("actix 204", actix, f"http://127.0.0.1:{actix_port}/", {}),
            ("actix 204 behind nginx", proxied, f"http://127.0.0.1:{proxied_port}/", {}),
            ("auth, 1 replica", replicas[0][0], f"{one}/auth", {}),
            ("heartbeat, 1 replica", replicas[0][0], f"{one}/heartbeat", hb),
            ("auth, 3 replicas behind nginx", proxy, f"{three}/auth", {}),
            ("heartbeat, 3 replicas behind nginx", proxy, f"{three}/heartbeat", hb),
        ]
        runs = {t[0]: [] for t in targets}
        commits = {base: [0.0, 0.0] for _, base in replicas}
        for rnd in range(b.ROUNDS):
            for name, srv, target, kw in targets:
                heartbeat = name.startswith("heartbeat")
                before = {base: b.metric(base, "session_timeout_db_commits_total") for _, base in replicas} if heartbeat else None
                t0 = time.monotonic()
                r = b.wrk(target, PG_SESSIONS, **kw)
                r["rps"] = r["rps"]
                runs[name].append(r)
                if heartbeat:
                    spent = time.monotonic() - t0
                    for _, base in replicas:
                        n = b.metric(base, "session_timeout_db_commits_total") - before[base]
                        if n > 0:
                            commits[base][0] += n
                            commits[base][1] += spent
                b.log(f"  postgres round {rnd + 1} {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.2f} ms")
        b.log(f"measuring {ENDINGS} endings across 3 replicas")
        visibility = ending_visibility([f"{base}/session-timeout/api/v1" for _, base in replicas])
        per_replica = [c / s for c, s in commits.values() if s > 0]
        return {
            "runs": {k: {"rps": statistics.median(x["rps"] for x in v), "p99_ms": statistics.median(x["p99_ms"] for x in v)} for k, v in runs.items()},
            "commits_per_s_max": max(per_replica) if per_replica else 0.0,
            "visibility": visibility,
        }
    finally:
        for p in procs:
            p.stop()
        subprocess.run([script, "remove", os.path.join(tmp, "pg")], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def pg_report(r):
    lines = ["## Several replicas on PostgreSQL\n",
             f"`make bench`, PostgreSQL part (bench/pg_bench.py): a throwaway PostgreSQL cluster from Debian's packages, "
             f"{PG_SESSIONS:,} sessions met by every replica, replicas with one worker, wrk as above. "
             "Ratios are to the actix-web 204 baseline measured in the same rounds. Through 3 replicas means one nginx "
             "worker round-robin in front (its own hop is in the figure), with nginx, three replicas, PostgreSQL and wrk "
             "sharing the machine's cores.\n",
             "| target | req/s | p99 ms | req/s vs actix | vs actix behind the same nginx |", "|---|---:|---:|---:|---:|"]
    base = r["runs"]["actix 204"]["rps"]
    hop = r["runs"]["actix 204 behind nginx"]["rps"]
    for name, m in r["runs"].items():
        behind = f"{m['rps'] / hop:.2f}x" if "nginx" in name else ""
        lines.append(f"| {name} | {m['rps']:,.0f} | {m['p99_ms']:.3f} | {m['rps'] / base:.2f}x | {behind} |")
    v = r["visibility"]
    lines.append(f"\nPostgreSQL commits per second per replica under full heartbeat load: **{r['commits_per_s_max']:.1f}** "
                 "(the busiest replica; heartbeats are group-committed once per 250 ms window, never one commit per heartbeat).\n")
    lines.append(f"An ending (logout through one replica) refused by both other replicas after: p50 **{v['p50_ms']:.1f} ms**, "
                 f"p99 **{v['p99_ms']:.1f} ms**, max {v['max_ms']:.1f} ms over {v['n']} endings (polled every 2 ms).\n")
    return "\n".join(lines) + "\n"
