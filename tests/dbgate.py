"""A TCP gate in front of the test database: refuses connections until opened, severs them when cut."""

from __future__ import annotations

import contextlib
import socket
import threading


def gate_route(settings, embedded_user: str = "postgres") -> tuple[str | tuple[str, int], str]:
    """The database a gate forwards to (a Unix socket or host and port) and a URL template through it."""
    from brainobs.database import EmbeddedServer

    url = settings.database
    if url.backend == "embedded":
        socket_path = str(EmbeddedServer(settings.home).status().socket_dir / ".s.PGSQL.5432")
        return socket_path, f"postgresql://{embedded_user}@127.0.0.1:{{port}}/postgres"
    assert url.port, "the test database URL names no port"
    return (url.host, url.port), settings.database_url.replace(f"@{url.host}:{url.port}", "@127.0.0.1:{port}")


class Gate:
    """A TCP port that refuses connections until opened, then forwards each one to the real database."""

    def __init__(self, target):
        self.target = target  # a (host, port) pair, or the path of a Unix socket
        self.port = free_port()
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            family = socket.AF_UNIX if isinstance(self.target, str) else socket.AF_INET
            upstream = socket.socket(family, socket.SOCK_STREAM)
            upstream.connect(self.target)
            self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def cut(self) -> None:
        """Refuse new connections and sever the open ones, as a server going away does."""
        self.close()
        for link in self._links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
