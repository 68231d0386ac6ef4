"""Runs the jitbridge benchmarks and prints medians; see bench/run.sh."""
import json, os, re, statistics, subprocess, sys, tempfile, time, uuid

REL = sys.argv[1]
ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
LOGINS = int(os.environ.get("LOGINS", "200"))
PG = os.environ.get("JB_TEST_PG", "postgres://postgres@127.0.0.1:5432")
# Which parts to run: comma-separated among verify, login (OIDC), saml; empty = all.
ONLY = {x.strip() for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()} or {"verify", "login", "saml"}
if ONLY - {"verify", "login", "saml"}:
    raise SystemExit(f"BENCH_ONLY: unknown part(s) {', '.join(sorted(ONLY - {'verify', 'login', 'saml'}))} (known: verify, login, saml)")
# Which login backends to run (default both).
BACKENDS = [b.strip() for b in os.environ.get("BENCH_BACKENDS", "sqlite,postgres").split(",") if b.strip()]
if set(BACKENDS) - {"sqlite", "postgres"}:
    raise SystemExit(f"BENCH_BACKENDS: unknown backend(s) {', '.join(sorted(set(BACKENDS) - {'sqlite', 'postgres'}))} (known: sqlite, postgres)")
# A command the bridge of the login benchmarks runs under, e.g. "valgrind --tool=callgrind"
# (instruction counts, whatever else the machine does); its CPU figures then mean nothing.
WRAP = os.environ.get("BENCH_WRAP", "").split()
CLK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))
OP_DIR = os.path.join(HERE, "..", "tests", "harness", "oidc-provider")
SAML_IDP_DIR = os.path.join(HERE, "..", "tests", "harness", "saml-idp")
procs = []


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def spawn(args, env=None, stdout=subprocess.PIPE):
    p = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=stdout, stderr=subprocess.DEVNULL, stdin=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def wait_http(url, timeout=300 if WRAP else 30):
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
    for name, port, store, extra in (
        ("jitbridge, in-process sessions", 18091, "memory", []),
        ("jitbridge, in-process + assertion", 18093, "memory", ["assert"]),
        ("jitbridge, Redis sessions", 18092, "redis", []),
        ("jitbridge, Redis + assertion", 18094, "redis", ["assert"]),
    ):
        p = spawn([f"{REL}/examples/verify_server", str(port), store, *extra])
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
# Every benchmark browser comes from 127.0.0.1: the per-address limits would refuse them.
rate_limits = {{ enabled = false }}
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
    bridge = spawn(WRAP + [f"{REL}/jitbridge", "--config", cfg.name, "serve"], {"JITBRIDGE_LOG": "warn"}, stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    rows = []
    if os.environ.get("BENCH_IDLE"):  # the bridge's own background work, without logins
        time.sleep(2)
        c0 = cpu_seconds(bridge.pid)
        time.sleep(10)
        print(f"  idle bridge ({backend}): {(cpu_seconds(bridge.pid) - c0) * 100:.2f} ms CPU per second", flush=True)
    for phase in ("first login (create)", "repeat login (update)"):
        c0 = cpu_seconds(bridge.pid)
        t0 = time.time()
        drv = subprocess.run([f"{REL}/examples/login_driver", f"http://127.0.0.1:{port}", issuer, "bench", "u", str(LOGINS), "8"], capture_output=True, text=True)
        if drv.returncode != 0:
            raise SystemExit(f"login_driver failed ({phase}):\n{drv.stdout[-2000:]}\n{drv.stderr[-2000:]}")
        wall = time.time() - t0
        cpu_ms = (cpu_seconds(bridge.pid) - c0) * 1000 / LOGINS
        rows.append((phase, cpu_ms, LOGINS / wall))
    bridge.terminate(); op.terminate()
    bridge.wait(); op.wait()
    if backend != "sqlite":
        subprocess.run(["psql", f"{PG}/test", "-qc", f"DROP DATABASE IF EXISTS {db.rsplit('/', 1)[1]} WITH (FORCE)"], check=False)
    os.unlink(cfg.name)
    return rows


def scratch_db(backend, tag):
    if backend == "sqlite":
        return f"sqlite://{tempfile.gettempdir()}/jb-bench-{tag}-{uuid.uuid4().hex}.db"
    name = f"jbbench_{uuid.uuid4().hex}"
    subprocess.run(["psql", f"{PG}/test", "-qc", f"CREATE DATABASE {name}"], check=True)
    return f"{PG}/{name}"


def drop_db(db):
    if db.startswith("sqlite://"):
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(db[len("sqlite://"):] + suffix)
            except FileNotFoundError:
                pass
    else:
        subprocess.run(["psql", f"{PG}/test", "-qc", f"DROP DATABASE IF EXISTS {db.rsplit('/', 1)[1]} WITH (FORCE)"], check=False)


def openssl_keypair(d, name):
    key, cert = os.path.join(d, f"{name}.key"), os.path.join(d, f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "30", "-subj", f"/CN={name}"], check=True, capture_output=True)
    return key, cert


def saml_login_round(backend, encrypt, keys, sign_requests=True):
    """One SAML round: a fresh database, IdP and bridge; LOGINS first logins, then LOGINS
    repeat logins of the same users. Returns [(phase, bridge CPU ms/login, logins/s)]."""
    port, conn = 18096, "bench"
    base = f"http://127.0.0.1:{port}"
    users = {f"u{i}": {"nameId": f"u{i}@example.com",
                       "attributes": {"email": f"u{i}@example.com", "givenName": "User", "sn": str(i),
                                      "groups": ["staff"] + (["admins"] if i % 2 else [])}}
             for i in range(LOGINS)}
    idp_env = {"SAML_IDP_KEY": keys["idp"][0], "SAML_IDP_CERT": keys["idp"][1],
               "SAML_SP_ENTITY_ID": f"{base}/saml/{conn}/metadata", "SAML_SP_ACS_URL": f"{base}/saml/{conn}/acs",
               "SAML_SP_SLO_URL": f"{base}/saml/{conn}/slo",
               "SAML_IDP_USERS": json.dumps(users),
               # Persistent NameIDs, as the bridge requires of an account key by default.
               "SAML_IDP_NAMEID_FORMAT": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"}
    if sign_requests:  # the IdP then insists on signed AuthnRequests
        idp_env["SAML_SP_CERT"] = keys["sp"][1]
    if encrypt:  # aes256-gcm content, rsa-oaep-mgf1p key transport (the harness defaults)
        idp_env["SAML_SP_ENCRYPTION_CERT"] = keys["sp"][1]
    idp = spawn(["node", os.path.join(SAML_IDP_DIR, "server.mjs"), "0"], idp_env)
    line = idp.stdout.readline()
    if not line:
        raise SystemExit("the SAML IdP did not start (run tests/harness/saml-idp/setup.sh)")
    idp_base = json.loads(line)["base_url"]
    db = scratch_db(backend, "saml")
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[server]
listen = "127.0.0.1:{port}"
workers = 2
# Every benchmark browser comes from 127.0.0.1: the per-address limits would refuse them.
rate_limits = {{ enabled = false }}
[database]
url = "{db}"
[[connection]]
name = "{conn}"
kind = "saml"
[connection.saml]
idp_metadata_url = "{idp_base}/metadata"
sp_private_key = {{ file = "{keys['sp'][0]}" }}
sp_certificate = {{ file = "{keys['sp'][1]}" }}
sign_requests = {"true" if sign_requests else "false"}
[connection.mapping]
username = "{{name_id}}"
email = "{{email}}"
display_name = "{{givenName}} {{sn}}"
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
    bridge = spawn(WRAP + [f"{REL}/jitbridge", "--config", cfg.name, "serve"], {"JITBRIDGE_LOG": "warn"}, stdout=subprocess.DEVNULL)
    rows = []
    try:
        wait_http(f"{base}/healthz")
        for phase in ("first login (create)", "repeat login (update)"):
            c0 = cpu_seconds(bridge.pid)
            t0 = time.time()
            r = subprocess.run([f"{REL}/examples/saml_login_driver", base, conn, "u", str(LOGINS), "8"], capture_output=True, text=True)
            wall = time.time() - t0
            if r.returncode != 0:
                raise SystemExit(f"saml_login_driver failed ({backend}, encrypt={encrypt}, {phase}):\n{r.stderr[:1500]}")
            rows.append((phase, (cpu_seconds(bridge.pid) - c0) * 1000 / LOGINS, LOGINS / wall))
    finally:
        bridge.terminate(); idp.terminate()
        bridge.wait(); idp.wait()
        drop_db(db)
        os.unlink(cfg.name)
    return rows


def rsa2048_private_ms():
    """CPU ms of one RSA-2048 private-key operation on this machine (OpenSSL's own figure)."""
    out = subprocess.run(["openssl", "speed", "-seconds", "3", "rsa2048"], capture_output=True, text=True).stdout
    m = re.search(r"^rsa\s+2048 bits\s+([\d.]+)s", out, re.M)
    return float(m.group(1)) * 1000 if m else float("nan")


def saml_login_bench():
    rsa_ms = rsa2048_private_ms()
    print(f"  this machine: one RSA-2048 private-key operation costs {rsa_ms:.2f} ms of CPU (openssl speed);"
          f" a login with a signed AuthnRequest and an encrypted assertion does two ({2 * rsa_ms:.2f} ms)", flush=True)
    keydir = tempfile.mkdtemp(prefix="jb-bench-saml-")
    keys = {n: openssl_keypair(keydir, n) for n in ("idp", "sp")}
    # (backend, encrypted assertion, signed AuthnRequest): the unsigned-request variant isolates
    # the ACS from the RSA signature of the AuthnRequest at /login.
    kinds = {"signed": (False, True), "encrypted": (True, True), "unsigned-req": (False, False),
             "encrypted-unsigned-req": (True, False)}
    wanted = [k.strip() for k in os.environ.get("BENCH_SAML", ",".join(kinds)).split(",") if k.strip()]
    if set(wanted) - set(kinds):
        raise SystemExit(f"BENCH_SAML: unknown variant(s) {', '.join(sorted(set(wanted) - set(kinds)))} (known: {', '.join(kinds)})")
    variants = [(b, *kinds[k]) for k in wanted for b in BACKENDS]
    results = {}  # (assertion, backend, phase) -> [(cpu, rate)]
    try:
        for r in range(ROUNDS):
            for backend, encrypt, sign in variants:  # interleaved rounds
                what = ("signed+encrypted" if encrypt else "signed") + ("" if sign else ", unsigned req")
                for phase, cpu, rate in saml_login_round(backend, encrypt, keys, sign):
                    results.setdefault((what, backend, phase), []).append((cpu, rate))
                    print(f"  round {r + 1} {what:30} {backend:8} {phase:22}: {cpu:.2f} ms CPU/login, {rate:.1f} logins/s", flush=True)
    finally:
        for f in os.listdir(keydir):
            os.unlink(os.path.join(keydir, f))
        os.rmdir(keydir)
    print(f"\nSAML SP-initiated login, {LOGINS} logins per phase, 8 concurrent browsers, medians of {ROUNDS} interleaved rounds;")
    print("bridge CPU includes /login (AuthnRequest, RSA-signed unless \"unsigned req\") and the ACS POST (XML signature check, mapping, provisioning, session)")
    print(f"{'assertion':30} {'backend':10} {'phase':24} {'bridge CPU ms/login':>20} {'logins/s (whole box)':>21}")
    for (what, backend, phase), xs in results.items():
        print(f"{what:30} {backend:10} {phase:24} {statistics.median(x[0] for x in xs):20.2f} {statistics.median(x[1] for x in xs):21.1f}", flush=True)


try:
    if "verify" in ONLY:
        print("== /auth/verify", flush=True)
        verify_bench()
    if "login" in ONLY:
        print(f"\n== full JIT login, {LOGINS} logins per phase, 8 concurrent browsers, {ROUNDS} interleaved rounds; bridge CPU includes /login and the callback")
        login_rows = {}
        for r in range(ROUNDS):
            for backend in BACKENDS:
                for phase, cpu, rate in login_bench(backend):
                    login_rows.setdefault((backend, phase), []).append((cpu, rate))
                    print(f"  round {r + 1} {backend:8} {phase:22}: {cpu:.2f} ms CPU/login, {rate:.1f} logins/s", flush=True)
        print(f"{'backend':10} {'phase':24} {'bridge CPU ms/login (median)':>29} {'all rounds':>24} {'logins/s':>9}")
        for (backend, phase), xs in login_rows.items():
            cpus = [c for c, _ in xs]
            print(f"{backend:10} {phase:24} {statistics.median(cpus):29.2f} {' '.join(f'{c:.2f}' for c in cpus):>24} {statistics.median(r for _, r in xs):9.1f}", flush=True)
    if "saml" in ONLY:
        print(f"\n== SAML JIT login (samlp IdP), {LOGINS} logins per phase, {ROUNDS} rounds", flush=True)
        saml_login_bench()
finally:
    for p in procs:
        if p.poll() is None:
            p.terminate()
