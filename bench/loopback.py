"""Loopback servers for the live-feed tests and benchmark: an RSS/Atom server whose items change, and a webhook receiver.

Everything listens on 127.0.0.1 only, on a free port, in a daemon thread.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss version="2.0"><channel><title>bomb</title><item><title>&lol9;</title>
<pubDate>Mon, 01 Jun 2020 10:00:00 GMT</pubDate><link>http://x/1</link></item></channel></rss>"""


def rss(items: list[dict], title: str = "Wire") -> bytes:
    """An RSS 2.0 document; each item has title, link, and published (a datetime) or pubDate (text)."""
    parts = [f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{escape(title)}</title>']
    for item in items:
        when = item.get("pubDate") or format_datetime(item.get("published") or datetime.now(timezone.utc))
        parts.append(f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
                     f"<pubDate>{when}</pubDate><description>{escape(item.get('body', ''))}</description></item>")
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")


class FeedServer:
    """Routes: path -> bytes (served with an ETag, honouring If-None-Match), or one of the special behaviours:
    ('status', code), ('sleep', seconds, bytes), ('huge', n_bytes), ('flaky', [codes...]) (answers each code once,
    then 200 with an empty JSON body). ``requests`` records (path, headers) of every request."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, dict]] = []
        self.bodies: list[tuple[str, bytes]] = []  # POST bodies
        self.not_modified = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                    route = server.routes.get(self.path)
                if route is None:
                    return self._send(404, b"not found")
                if isinstance(route, bytes):
                    etag = '"' + hashlib.sha256(route).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        with server.lock:
                            server.not_modified += 1
                        self.send_response(304)
                        self.send_header("ETag", etag)
                        self.end_headers()
                        return
                    return self._send(200, route, {"ETag": etag, "Content-Type": "application/rss+xml"})
                kind = route[0]
                if kind == "status":
                    return self._send(route[1], b"oops")
                if kind == "sleep":
                    time.sleep(route[1])
                    return self._send(200, route[2])
                if kind == "huge":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/rss+xml")
                    self.end_headers()
                    chunk = b"<rss>" + b" " * (1 << 20)
                    sent = 0
                    try:
                        while sent < route[1]:
                            self.wfile.write(chunk)
                            sent += len(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                return self._send(500, b"?")

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                path = self.path.split("?")[0]
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                    route = server.routes.get(path)
                    code = 200
                    if isinstance(route, tuple) and route[0] == "flaky" and route[1]:
                        code = route[1].pop(0)
                    elif isinstance(route, tuple) and route[0] == "status":
                        code = route[1]
                    if code == 200:
                        server.bodies.append((path, body))
                self._send(code, b"{}")

            def _send(self, code: int, body: bytes, headers: dict | None = None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def json_posts(self, path: str) -> list[dict]:
        with self.lock:
            return [json.loads(b) for p, b in self.bodies if p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
