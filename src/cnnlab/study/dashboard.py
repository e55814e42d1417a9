"""``cnnlab study dashboard``: optuna-dashboard on a study storage, bound to 127.0.0.1.

Why optuna-dashboard: a study is an Optuna study, so Optuna's own web UI already shows every
trial, its params (the config fields the study varies), user attributes (plan, metrics) and,
as intermediate values, the validation accuracy per epoch (learning curves).

Why serve it here rather than through ``optuna_dashboard.run_server``: binding the socket first
turns a busy port into one line before anything is printed, the storage URL is checked by the
same code as every other study command (a missing SQLite file is refused, not created), and the
address actually bound (``--port 0``: any free port) is printed. The app itself is
optuna-dashboard's public ``wsgi()``, served by the standard library's threaded WSGI server, as
its own command-line tool does.

It answers only its own origin (``cnnlab.origin``: a web page cannot reach it through DNS
rebinding) and opens read-only: optuna-dashboard reads with GET alone, so every other method
(delete a study, edit a note, tell a trial) is refused unless ``--allow-writes`` is given.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cnnlab.errors import CnnlabError
from cnnlab.origin import allowed_hosts, wsgi_guard
from cnnlab.runtime import interruptible
from cnnlab.study import storage as st

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # optuna-dashboard's own default


class _Server(ThreadingMixIn, WSGIServer):
    # A browser's open connection must not keep Ctrl-C waiting: request threads are daemons
    # and closing the server does not join them (ThreadingMixIn joins even daemon threads).
    daemon_threads = True
    block_on_close = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass  # the dashboard polls its API every few seconds: one stderr line per request


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_dashboard(
    storage: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    log: Callable[[str], None] = print,
    allow_writes: bool = False,
) -> None:
    """Serve optuna-dashboard for ``storage`` until interrupted (Ctrl-C returns normally);
    read-only unless ``allow_writes``."""
    from optuna_dashboard import wsgi

    store = st.open_storage(storage, must_exist=True)
    app = wsgi(store)
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as e:  # port taken, no permission, unknown host name
        raise CnnlabError(
            f"cannot serve the dashboard on {host}:{port}: {e.strerror or e}"
        ) from None
    # the port is known only now (--port 0)
    server.set_app(wsgi_guard(app, allowed_hosts(host, server.server_port), allow_writes))
    with server:
        studies = st.study_names(store)
        log(
            f"optuna-dashboard for {st.safe_url(storage)} ({len(studies)} "
            f"stud{'y' if len(studies) == 1 else 'ies'}): "
            f"http://{host}:{server.server_port}/ "
            f"({'read and write' if allow_writes else 'read-only'}; Ctrl-C to stop)"
        )
        if not is_loopback(host):
            log(
                f"warning: the dashboard has no login; anyone who reaches {host} can read "
                + ("and change (annotate, delete) " if allow_writes else "")
                + "these studies"
            )
        # started in the background (`cnnlab study dashboard &`), `kill -INT` must still stop it
        with interruptible(), contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the way to stop
            server.serve_forever()
