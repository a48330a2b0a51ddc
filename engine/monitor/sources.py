"""A feed's sources: RSS/Atom URLs and server folders the worker polls on a schedule (engine.monitor.poller).

This module keeps the ``feed_sources`` rows (add, list, remove, the feed's current model) and does the fetching:

- **URLs**: http(s) only; the host's addresses are looked up and private, loopback, link-local and reserved ones are
  refused unless ``BELLWETHER_ALLOW_PRIVATE_SOURCES=1`` (redirects are followed by hand, each hop checked the same
  way). The check is made again on the address each connection is opened to (:func:`connect_checked`), so a name
  that answers differently a moment later (DNS rebinding) still cannot reach a private address. Requests are conditional (``If-None-Match`` / ``If-Modified-Since`` from the last answer), the whole fetch
  has a deadline (``BELLWETHER_SOURCE_TIMEOUT_S``), and a body larger than ``BELLWETHER_SOURCE_MAX_BYTES`` is
  refused while it streams in, never held whole. The client is requests (urllib3 underneath).
- **Folders**: files ending .csv, .xlsx, .jsonl, .json, .xml, .rss or .atom, oldest first; a file is new when its
  content hash has not been imported from this source (``source_files``), so a renamed copy is not imported twice.

Errors are plain sentences with no secrets and no full URLs of other systems (only the source's own host).
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from engine import access, db, settings
from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine.jobs import runs
from engine.monitor import feeds, vocabulary

KINDS = ("rss", "folder")
FOLDER_SUFFIXES = (".csv", ".xlsx", ".jsonl", ".json", ".xml", ".rss", ".atom")
MAX_REDIRECTS = 5
USER_AGENT = "Bellwether feed poller (+https://localhost/bellwether)"
# Who is reaching out, as the address checks below name it (callers pass one of these; shown translated).
WHO_REACHES = (N_("A source"), N_("A webhook"), N_("The webhook"), N_("The mail server"))


# ---------------------------------------------------------------------------------------------------------------
# Addresses


def check_url(url: str, what: str = "A source") -> str:
    """The URL, stripped, when it is http(s) and its host resolves to addresses Bellwether may reach; else UserError."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(_("{what} must be an http:// or https:// address (got '{url}').", what=_(what),
                          url=_short(url)))
    check_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), what)
    return url


def check_host(host: str, port: int, what: str = "A source") -> None:
    allowed_addresses(host, port, what)


def allowed_addresses(host: str, port: int, what: str = "A source") -> list[tuple]:
    """The host's addresses (getaddrinfo entries) when every one of them may be reached; else UserError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UserError(_("{what}'s host '{host}' could not be found. Check the address.", what=_(what),
                          host=host)) from None
    if settings.allow_private_sources():
        return infos
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
                or address.is_multicast or address.is_unspecified):
            raise UserError(_("{what}'s host '{host}' is a private or local address ({address}), which Bellwether "
                              "does not reach unless an administrator sets BELLWETHER_ALLOW_PRIVATE_SOURCES=1.",
                              what=_(what), host=host, address=str(address)))
    return infos


def connect_checked(host: str, port: int, timeout: float | None, what: str = "A source",
                    source_address=None, socket_options=None) -> socket.socket:
    """A TCP connection to one of the host's addresses, looked up and checked right here: the address checked is the
    address connected to, so a name that changes its answer between a check and the connection (DNS rebinding)
    cannot lead to a private or local address."""
    from urllib3.util import connection

    last: OSError | None = None
    for _family, _type, _proto, _name, sockaddr in allowed_addresses(host, port, what):
        try:
            return connection.create_connection((sockaddr[0], port), timeout, source_address=source_address,
                                                socket_options=socket_options)
        except socket.timeout:
            raise
        except OSError as exc:
            last = exc
    raise last or OSError(f"no address for {host}")


def checked_session(what: str = "A source"):
    """A requests Session whose every connection goes through :func:`connect_checked` (TLS still verifies the host
    name), and which ignores proxies from the environment (the check must hold for the real peer)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    def _new_conn(self):
        try:
            return connect_checked(self._dns_host, self.port, self.timeout, what, self.source_address,
                                   self.socket_options)
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc

    http_conn = type("CheckedHTTPConnection", (HTTPConnection,), {"_new_conn": _new_conn})
    https_conn = type("CheckedHTTPSConnection", (HTTPSConnection,), {"_new_conn": _new_conn})
    http_pool = type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})

    class CheckedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", CheckedAdapter())
    session.mount("https://", CheckedAdapter())
    return session


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def host_of(location: str) -> str:
    return urlsplit(location).hostname or location


# ---------------------------------------------------------------------------------------------------------------
# The sources of a feed


def add_source(conn, feed: str | int, location: str, kind: str | None = None, interval_s: float = 300.0,
               run_id: int | None = None, created_by: str | None = None, actor=None) -> dict:
    """Add a URL or a server folder to an existing feed; ``run_id`` also sets the feed's current model. ``actor``
    (engine.access; None: the local administrator) must be an analyst who created the feed, or an admin."""
    feed_row = feeds.get_feed(conn, feed)
    who = access.check(conn, actor, "feed.sources", f"feed:{feed_row['name']}", owner=feed_row.get("created_by"))
    created_by = created_by or who.name
    location = (location or "").strip()
    if not location:
        raise UserError(_("Give the source's address (an RSS or Atom URL) or a folder on the server."))
    if kind is None:
        kind = "rss" if "://" in location else "folder"
    if kind not in KINDS:
        raise UserError(_("A source is 'rss' (a URL) or 'folder' (a folder on the server), not '{kind}'.", kind=kind))
    if kind == "rss":
        location = check_url(location)
    else:
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise UserError(_("{location} is not a folder on this server. Give the full path of an existing folder.",
                              location=location))
        location = str(folder.resolve())
    try:
        interval_s = float(interval_s)
    except (TypeError, ValueError):
        raise UserError(_("The interval is a number of seconds, for example 300.")) from None
    minimum = settings.min_poll_interval_s()
    if not minimum <= interval_s <= 7 * 86400:
        raise UserError(_("The interval must be between {minimum} seconds and 7 days (604800 seconds).",
                          minimum=f"{minimum:g}"))
    if run_id is not None:
        set_current_model(conn, feed_row["id"], run_id, actor=who)
    if conn.execute("SELECT 1 FROM feed_sources WHERE feed_id = ? AND kind = ? AND location = ?",
                    [feed_row["id"], kind, location]).fetchone():
        raise UserError(_("Feed '{feed}' already has this source.", feed=feed_row["name"]))
    source_id = conn["feed_sources"].insert({
        "feed_id": feed_row["id"], "kind": kind, "location": location, "interval_s": interval_s, "enabled": 1,
        "next_poll_at": db.now(), "error_count": 0, "n_imported": 0, "created_at": db.now(),
        "created_by": created_by,
    }).last_pk
    access.record(conn, who, "feed.sources", f"source:{source_id}", {"added": location, "kind": kind})
    return get_source(conn, source_id)


def get_source(conn, source_id: int) -> dict:
    rows = list(conn.query(
        "SELECT s.*, f.name AS feed_name FROM feed_sources s JOIN feeds f ON f.id = s.feed_id WHERE s.id = ?",
        [int(source_id)]))
    if not rows:
        raise NotFound(_("There is no source {source_id}. `python -m engine feed source list` shows them.",
                         source_id=source_id))
    return rows[0]


def list_sources(conn, feed: str | int | None = None) -> list[dict]:
    if feed is None:
        return list(conn.query("SELECT s.*, f.name AS feed_name FROM feed_sources s JOIN feeds f "
                               "ON f.id = s.feed_id ORDER BY s.id"))
    feed_row = feeds.get_feed(conn, feed)
    return list(conn.query("SELECT s.*, f.name AS feed_name FROM feed_sources s JOIN feeds f ON f.id = s.feed_id "
                           "WHERE s.feed_id = ? ORDER BY s.id", [feed_row["id"]]))


def _check_source(conn, source_id: int, actor):
    source = get_source(conn, source_id)
    owner = conn.execute("SELECT created_by FROM feeds WHERE id = ?", [source["feed_id"]]).fetchone()[0]
    return access.check(conn, actor, "feed.sources", f"source:{source_id}", owner=owner)


def remove_source(conn, source_id: int, actor=None) -> None:
    """Stop polling a source. The articles it brought in stay in the feed."""
    who = _check_source(conn, source_id, actor)
    with db.transaction(conn):
        access.record(conn, who, "feed.sources", f"source:{source_id}", {"removed": True})
        conn.execute("DELETE FROM source_files WHERE source_id = ?", [int(source_id)])
        conn.execute("DELETE FROM feed_sources WHERE id = ?", [int(source_id)])


def poll_now(conn, source_id: int, actor=None) -> dict:
    """Make the source due at once (the worker polls it on its next pass) and clear its back-off."""
    _check_source(conn, source_id, actor)
    conn.execute("UPDATE feed_sources SET next_poll_at = ?, error_count = 0 WHERE id = ?", [db.now(), int(source_id)])
    return get_source(conn, source_id)


def set_current_model(conn, feed: str | int, run_id: int | None, actor=None) -> None:
    """The run that scores what the feed's sources bring in (None: the newest run that scored the feed)."""
    feed_row = feeds.get_feed(conn, feed)
    who = access.check(conn, actor, "feed.sources", f"feed:{feed_row['name']}", owner=feed_row.get("created_by"))
    if run_id is not None:
        run = runs.for_scoring(conn, int(run_id))
        labels = runs.labels(run)
        if vocabulary.no_negative_class(labels):
            raise UserError(_("Run {run_id} cannot be the feed's sentiment model: its labels ({labels}) have no "
                              "negative class, so the Monitor's negative share and surge alerts would stay at zero.",
                              run_id=run_id, labels=", ".join(labels)))
    with db.transaction(conn):
        conn.execute("UPDATE feeds SET current_model = ? WHERE id = ?", [run_id, feed_row["id"]])
        access.record(conn, who, "feed.sources", f"feed:{feed_row['name']}", {"current_model": run_id})


def current_model(conn, feed_id: int) -> int | None:
    """The feed's current model: the one set with ``feed set-model`` / ``feed source add --run``, else the newest
    succeeded run that has scored the feed's articles (sentiment, not topics)."""
    row = conn.execute("SELECT current_model FROM feeds WHERE id = ?", [feed_id]).fetchone()
    if row and row[0]:
        return int(row[0])
    found = conn.execute(
        "SELECT j.model_run_id FROM jobs j JOIN jobs r ON r.id = j.model_run_id AND r.status = 'succeeded' "
        "WHERE j.kind = 'score' AND j.feed_id = ? AND j.status = 'succeeded' "
        "AND COALESCE(json_extract(j.config_json, '$.purpose'), 'sentiment') = 'sentiment' "
        "ORDER BY j.id DESC LIMIT 1", [feed_id]).fetchone()
    return int(found[0]) if found else None


# ---------------------------------------------------------------------------------------------------------------
# Fetching


@dataclass
class Fetched:
    status: int  # 200, or 304 when nothing changed
    body: bytes = b""
    etag: str | None = None
    last_modified: str | None = None
    file_name: str = "feed.xml"


def fetch_url(url: str, etag: str | None = None, last_modified: str | None = None,
              timeout_s: float | None = None, max_bytes: int | None = None) -> Fetched:
    """GET the URL conditionally, within a deadline and a size limit; UserError (plain words) on any failure."""
    import requests

    timeout_s = timeout_s or settings.source_timeout_s()
    max_bytes = max_bytes or settings.source_max_bytes()
    deadline = time.monotonic() + timeout_s
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, application/xml, "
               "text/xml, text/csv, */*;q=0.5", "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    host = host_of(url)
    current = url
    with checked_session() as session:  # each connection checks the address it connects to (DNS rebinding)
        for _hop in range(MAX_REDIRECTS + 1):
            check_url(current)
            left = deadline - time.monotonic()
            if left <= 0:
                raise UserError(_("{host} did not answer within {seconds} seconds.", host=host,
                                  seconds=f"{timeout_s:g}"))
            try:
                response = session.get(current, headers=headers, timeout=(min(left, 10.0), left), stream=True,
                                       allow_redirects=False)
            except requests.exceptions.Timeout:
                raise UserError(_("{host} did not answer within {seconds} seconds.", host=host,
                                  seconds=f"{timeout_s:g}")) from None
            except requests.exceptions.ConnectionError:
                raise UserError(_("{host} could not be reached (connection refused or dropped).", host=host)) from None
            except requests.exceptions.RequestException as exc:
                raise UserError(_("{host} could not be fetched ({error}).", host=host, error=type(exc).__name__)) from None
            with response:
                if response.is_redirect:
                    current = urljoin(current, response.headers.get("Location", ""))
                    continue
                if response.status_code == 304:
                    return Fetched(304, b"", response.headers.get("ETag") or etag,
                                   response.headers.get("Last-Modified") or last_modified)
                if response.status_code >= 400:
                    raise UserError(_("{host} answered HTTP {status} ({reason}).", host=host, status=response.status_code,
                                      reason=response.reason or "error"))
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise UserError(_("{host} sent {size} MB, more than the {limit} MB a source may send; nothing "
                                      "was read.", host=host, size=f"{int(declared) / 1e6:.1f}",
                                      limit=f"{max_bytes / 1e6:.1f}"))
                chunks, size = [], 0
                try:
                    for chunk in response.iter_content(65536):
                        size += len(chunk)
                        if size > max_bytes:
                            raise UserError(_("{host} sent more than the {limit} MB a source may send; nothing "
                                              "was read.", host=host, limit=f"{max_bytes / 1e6:.1f}"))
                        if time.monotonic() > deadline:
                            raise UserError(_("{host} did not finish sending within {seconds} seconds.", host=host,
                                              seconds=f"{timeout_s:g}"))
                        chunks.append(chunk)
                except requests.exceptions.RequestException:
                    raise UserError(_("{host} broke off while sending (or was too slow).", host=host)) from None
                name = Path(urlsplit(current).path).name or "feed.xml"
                return Fetched(response.status_code, b"".join(chunks), response.headers.get("ETag"),
                               response.headers.get("Last-Modified"), name)
        raise UserError(_("{host} redirected more than {n} times.", host=host, n=MAX_REDIRECTS))


def new_folder_files(conn, source: dict) -> list[tuple[Path, bytes, str]]:
    """(path, bytes, sha256) of the folder's readable files not yet imported from this source, oldest first."""
    folder = Path(source["location"])
    if not folder.is_dir():
        raise UserError(_("The folder {folder} no longer exists on this server (or cannot be read).", folder=folder))
    max_bytes = settings.source_max_bytes()
    seen = {r[0] for r in conn.execute("SELECT sha256 FROM source_files WHERE source_id = ?", [source["id"]])}
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        if not path.is_file() or path.suffix.lower() not in FOLDER_SUFFIXES or path.name.startswith("."):
            continue
        if path.stat().st_size > max_bytes:
            raise UserError(_("{file_name} is larger than the {limit} MB a source may deliver.", file_name=path.name,
                              limit=f"{max_bytes / 1e6:.1f}"))
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha not in seen:
            found.append((path, data, sha))
            seen.add(sha)
    return found


def article_counts(conn, feed_id: int, run_id: int | None) -> dict:
    """The feed's articles and how many ``run_id`` has scored, from the rollups (cheap at any size)."""
    total, scored = conn.execute(
        "SELECT COALESCE(SUM(CASE WHEN run_id = 0 AND label = '' THEN n END), 0), "
        "COALESCE(SUM(CASE WHEN run_id = ? AND run_id <> 0 THEN n END), 0) FROM day_counts WHERE feed_id = ?",
        [run_id or 0, feed_id]).fetchone()
    return {"articles": int(total), "scored": int(scored)}


def any_enabled(conn) -> bool:
    """Whether some feed has a source to poll (the dashboard then makes sure a worker runs)."""
    return bool(conn.execute("SELECT 1 FROM feed_sources WHERE enabled = 1 LIMIT 1").fetchone())
