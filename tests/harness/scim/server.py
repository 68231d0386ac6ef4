#!/usr/bin/env python3
"""Test-only SCIM 2.0 service provider for jitbridge's integration tests.

Runs the real PyPI package ``scim2-server`` (its WSGI application over its
in-memory storage, the same pieces its own ``scim2-server`` command uses) on
127.0.0.1, with a fresh, empty store on every start.

Usage: server.py [PORT]       (PORT 0 or absent: an ephemeral port)

Environment:
  SCIM_TOKEN        required, non-empty: the bearer token every request must carry
  SCIM_ACCESS_LOG   1 to log one line per request to stderr (default: off)
  SCIM_IGNORE_STDIN 1 to keep running when stdin reaches EOF (default: exit on EOF)

Stdout: exactly one line once the server answers HTTP requests:
  ready http://127.0.0.1:PORT/v2
then nothing else. Everything else goes to stderr.

The process exits (code 0) when stdin reaches EOF, and on SIGTERM / SIGINT.
"""

import http.client
import logging
import os
import signal
import sys
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import (
    BEARER_TOKEN_SCHEME,
    BearerTokenApplication,
)
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

HOST = "127.0.0.1"
BASE_PATH = "/v2"
log = logging.getLogger("scim-harness")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as the package's own command does.

    The listen backlog is raised from socketserver's 5 so that a burst of
    parallel connections (seed.py) is not dropped and retried by the kernel.
    """

    daemon_threads = True
    request_queue_size = 512


class QuietHandler(WSGIRequestHandler):
    """wsgiref's handler, with its per-request access log made optional."""

    access_log = False

    def log_message(self, format, *args):  # noqa: A002 (wsgiref's signature)
        if self.access_log:
            super().log_message(format, *args)


class AllRequestsBearerApplication(BearerTokenApplication):
    """The package's bearer-token application, but /ServiceProviderConfig needs
    the token too (stock scim2-server serves it without authentication)."""

    def needs_auth(self, request):
        return True


def build_app(token: str) -> AllRequestsBearerApplication:
    config = load_default_service_provider_config()
    config.authentication_schemes = [
        *(config.authentication_schemes or []),
        BEARER_TOKEN_SCHEME,
    ]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=config,
    )
    # The secret only signs cursors, which the default configuration does not
    # announce; give one anyway so the service never reads the environment.
    service = ScimService(provider, secret=os.urandom(32).hex())
    return AllRequestsBearerApplication(
        InMemoryStorage(), provider, service=service, bearer_tokens=[token]
    )


def self_check(port: int, token: str) -> None:
    """One real request through the whole stack before announcing readiness."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request(
            "GET",
            f"{BASE_PATH}/ServiceProviderConfig",
            headers={"Authorization": f"Bearer {token}"},
        )
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"self-check got HTTP {resp.status}")
    finally:
        conn.close()


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if len(sys.argv) > 2:
        print("usage: server.py [PORT]", file=sys.stderr)
        return 2
    try:
        port = int(sys.argv[1]) if len(sys.argv) == 2 else 0
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        print(f"server.py: invalid port {sys.argv[1]!r}", file=sys.stderr)
        return 2
    token = os.environ.get("SCIM_TOKEN", "")
    if not token:
        print("server.py: SCIM_TOKEN must be set to a non-empty token", file=sys.stderr)
        return 2

    QuietHandler.access_log = os.environ.get("SCIM_ACCESS_LOG") == "1"
    app = build_app(token)
    try:
        server = make_server(
            HOST, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
        )
    except OSError as exc:
        print(f"server.py: cannot listen on {HOST}:{port}: {exc}", file=sys.stderr)
        return 1
    port = server.server_port

    stop = threading.Event()

    def watch_stdin() -> None:
        # os.read on the raw descriptor: a daemon thread blocked inside
        # sys.stdin's buffered reader makes interpreter shutdown abort (SIGABRT).
        try:
            while os.read(0, 65536):
                pass
        except Exception:  # noqa: BLE001 (closed or missing stdin is EOF too)
            pass
        log.info("stdin closed, stopping")
        stop.set()

    def on_signal(signum, _frame) -> None:
        log.info("signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="serve", daemon=True
    )
    serving.start()
    try:
        self_check(port, token)
    except Exception as exc:  # noqa: BLE001
        print(f"server.py: server does not answer: {exc}", file=sys.stderr)
        server.shutdown()
        return 1

    if os.environ.get("SCIM_IGNORE_STDIN") != "1":
        threading.Thread(target=watch_stdin, name="stdin", daemon=True).start()

    sys.stdout.write(f"ready http://{HOST}:{port}{BASE_PATH}\n")
    sys.stdout.flush()
    log.info("scim2-server serving on http://%s:%d%s", HOST, port, BASE_PATH)

    # Event.wait with a timeout keeps the main thread responsive to signals.
    while not stop.wait(0.1):
        pass
    server.shutdown()
    server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
