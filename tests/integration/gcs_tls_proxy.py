"""Route TensorFlow's own gs:// client to the GCS emulator: a TLS-terminating CONNECT proxy.

TensorFlow's GCS filesystem has its endpoints (`https://www.googleapis.com`,
`https://storage.googleapis.com`) compiled in and ignores `STORAGE_EMULATOR_HOST`, but its
libcurl honours `HTTPS_PROXY` and `CURL_CA_BUNDLE`. This proxy accepts the CONNECT, terminates
TLS with a self-signed certificate for those two hosts, and forwards each request inside the
tunnel to the emulator over plain HTTP, translating the few things that differ:

- media downloads `GET storage.googleapis.com/<bucket>/<object>` become JSON API `alt=media`
  downloads;
- chunked request bodies are sent on with a Content-Length;
- resumable-upload `Location` headers point back at `https://www.googleapis.com`, so the
  upload's next requests come through the tunnel too.

`env()` is what a process needs for its TensorFlow to use the emulator (test support only).
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import socketserver
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

HOSTS = ("www.googleapis.com", "storage.googleapis.com")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "content-length"}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for `HOSTS`, written under `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTS[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
    """The request's body, de-chunked when libcurl streamed it."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while size := int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


class TfGcsProxy:
    """The proxy, on 127.0.0.1 with a free port; a context manager."""

    def __init__(self, emulator_url: str) -> None:
        self._upstream = urlsplit(emulator_url)
        self._dir = tempfile.TemporaryDirectory(prefix="tfdist-tls-proxy-")
        self.ca_bundle, key = _self_signed(Path(self._dir.name))
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.ca_bundle, key)
        self.requests: list[str] = []
        proxy = self

        class Tunnelled(http.server.BaseHTTPRequestHandler):
            """One request inside the TLS tunnel, forwarded to the emulator."""

            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                host = self.headers.get("Host", "").split(":")[0]
                path = self.path
                if host == "storage.googleapis.com":  # XML-style media download
                    bucket, _, name = path.lstrip("/").partition("/")
                    name = quote(unquote(name), safe="")
                    path = f"/download/storage/v1/b/{bucket}/o/{name}?alt=media"
                proxy.requests.append(f"{self.command} {host}{self.path}")
                body = _read_body(self)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP and k.lower() != "host"
                }
                if body or self.command in {"POST", "PUT", "PATCH"}:
                    headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(
                    proxy._upstream.hostname or "127.0.0.1", proxy._upstream.port, timeout=60
                )
                try:
                    upstream.request(self.command, path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                emulator = f"{proxy._upstream.scheme}://{proxy._upstream.netloc}"
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value.replace(emulator, "https://www.googleapis.com"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        class Connect(http.server.BaseHTTPRequestHandler):
            """The CONNECT that opens a tunnel; everything else is refused."""

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_CONNECT(self) -> None:
                if self.path.split(":")[0] not in HOSTS:
                    self.send_error(403, f"this proxy only tunnels to {', '.join(HOSTS)}")
                    return
                self.send_response(200, "Connection Established")
                self.end_headers()
                self.wfile.flush()
                with tls.wrap_socket(self.connection, server_side=True) as tunnel:
                    Tunnelled(tunnel, self.client_address, self.server)
                self.close_connection = True

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Connect)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def env(self) -> dict[str, str]:
        """Environment for a process whose TensorFlow should read and write the emulator."""
        local = "127.0.0.1,localhost"
        return {
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "CURL_CA_BUNDLE": str(self.ca_bundle),
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "NO_PROXY": local,
            "no_proxy": local,
            "no_grpc_proxy": local,
        }

    def __enter__(self) -> TfGcsProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._dir.cleanup()
