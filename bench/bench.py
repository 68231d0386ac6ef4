"""Runs the jitbridge benchmarks and prints medians; see bench/run.sh."""
import json, os, re, statistics, subprocess, sys, tempfile, time, uuid

REL = sys.argv[1]
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
LOGINS = int(os.environ.get("LOGINS", "200"))
PG = os.environ.get("JB_TEST_PG", "postgres://postgres@127.0.0.1:5432")
CLK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
OP_DIR = os.path.join(HERE, "..", "tests", "harness", "oidc-provider")
procs = []


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def spawn(args, env=None, stdout=subprocess.PIPE):
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=stdout, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def wait_http(url, timeout=30):
    import urllib.request
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception as e:  # noqa: BLE001
            if hasattr(e, "code"):
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def to_ms(s):
    v, unit = re.match(r"([\d.]+)(\w+)", s).groups()
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, cookie):
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{DURATION}", "--latency", "-H", cookie, f"http://127.0.0.1:{port}/auth/verify"],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from port {port}:\n{out}")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": to_ms(lat["50"]),
        "p99": to_ms(lat["99"]),
    }


def verify_bench():
    servers = {"plain actix-web (ceiling)": (18090, spawn([f"{REL}/examples/plain_actix", "18090"]), "Cookie: x=y")}
    for name, port, store in (("jitbridge, in-process sessions", 18091, "memory"), ("jitbridge, Redis sessions", 18092, "redis")):
        p = spawn([f"{REL}/examples/verify_server", str(port), store])
        cookie = p.stdout.readline().strip()
        servers[name] = (port, p, cookie)
    for port, _, _ in servers.values():
        wait_http(f"http://127.0.0.1:{port}/auth/verify")
    results = {name: [] for name in servers}
    for r in range(ROUNDS):
        for name, (port, p, cookie) in servers.items():  # interleaved rounds
            c0 = cpu_seconds(p.pid)
            res = wrk(port, cookie)
            res["cpu_us"] = (cpu_seconds(p.pid) - c0) * 1e6 / res["requests"]
            results[name].append(res)
            print(f"  round {r + 1} {name}: {res['rps']:.0f} req/s, p99 {res['p99']:.2f} ms, {res['cpu_us']:.1f} us CPU/req", flush=True)
    med = {n: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99", "cpu_us")} for n, rs in results.items()}
    ceiling = med["plain actix-web (ceiling)"]
    print(f"\n/auth/verify, wrk -t2 -c64 -d{DURATION}, medians of {ROUNDS} interleaved rounds")
    print(f"{'target':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'of ceiling':>11} {'p99 ratio':>10}")
    for n, m in med.items():
        print(f"{n:34} {m['rps']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu_us']:11.1f} {m['rps'] / ceiling['rps']:10.0%} {m['p99'] / ceiling['p99']:10.2f}")
    for _, p, _ in servers.values():
        p.terminate()


def login_bench(backend):
    port = 18095
    accounts = {f"u{i}": {"preferred_username": f"u{i}", "email": f"u{i}@example.com", "email_verified": True,
                          "given_name": "User", "family_name": str(i), "groups": ["staff"] + (["admins"] if i % 2 else [])}
                for i in range(LOGINS)}
    clients = [{"client_id": "bench", "client_secret": "bench-secret-0123456789", "redirect_uris": [f"http://127.0.0.1:{port}/callback/bench"]}]
    op = spawn(["node", os.path.join(OP_DIR, "server.mjs")], {"OP_PORT": "0", "OP_CLIENTS": json.dumps(clients), "OP_ACCOUNTS": json.dumps(accounts)})
    issuer = json.loads(op.stdout.readline())["issuer"]
    if backend == "sqlite":
        db = f"sqlite://{tempfile.gettempdir()}/jb-bench-login-{uuid.uuid4().hex}.db"
    else:
        name = f"jbbench_{uuid.uuid4().hex}"
        subprocess.run(["psql", f"{PG}/test", "-qc", f"CREATE DATABASE {name}"], check=True)
        db = f"{PG}/{name}"
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{port}"
workers = 2
[database]
url = "{db}"
[[connection]]
name = "bench"
kind = "oidc"
issuer = "{issuer}"
client_id = "bench"
client_secret = "bench-secret-0123456789"
scopes = ["openid", "email", "profile", "groups"]
[connection.mapping]
username = "preferred_username"
display_name = "{{given_name}} {{family_name}}"
[[connection.mapping.roles]]
role = "admin"
claim = "groups"
equals = "admins"
[[connection.mapping.roles]]
role = "staff"
claim = "groups"
equals = "staff"
""")
    cfg.close()
    bridge = spawn([f"{REL}/jitbridge", "--config", cfg.name, "serve"], {"JITBRIDGE_LOG": "warn"}, stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    rows = []
    for phase in ("first login (create)", "repeat login (update)"):
        c0 = cpu_seconds(bridge.pid)
        t0 = time.time()
        subprocess.run([f"{REL}/examples/login_driver", f"http://127.0.0.1:{port}", issuer, "bench", "u", str(LOGINS), "8"], check=True, capture_output=True)
        wall = time.time() - t0
        cpu_ms = (cpu_seconds(bridge.pid) - c0) * 1000 / LOGINS
        rows.append((phase, cpu_ms, LOGINS / wall))
    bridge.terminate(); op.terminate()
    bridge.wait(); op.wait()
    if backend != "sqlite":
        subprocess.run(["psql", f"{PG}/test", "-qc", f"DROP DATABASE IF EXISTS {db.rsplit('/', 1)[1]} WITH (FORCE)"], check=False)
    os.unlink(cfg.name)
    return rows


try:
    print("== /auth/verify", flush=True)
    verify_bench()
    print(f"\n== full JIT login, {LOGINS} logins per phase, 8 concurrent browsers; bridge CPU includes /login and the callback")
    print(f"{'backend':10} {'phase':24} {'bridge CPU ms/login':>20} {'logins/s (whole box)':>21}")
    for backend in ("sqlite", "postgres"):
        for phase, cpu, rate in login_bench(backend):
            print(f"{backend:10} {phase:24} {cpu:20.2f} {rate:21.1f}", flush=True)
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
