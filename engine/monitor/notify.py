"""Notifications: new alerts (and, where a channel asks, training runs that finished or failed) pushed to channels.

A channel is a webhook (a JSON POST; ``style`` 'json' is Bellwether's own payload, 'slack' a Slack incoming-webhook
message, 'teams' a Microsoft Teams MessageCard) or e-mail over SMTP. The worker's periodic step
(engine.monitor.poller) calls :func:`collect`, which turns each new event into one ``notify_deliveries`` row per
channel (unique per channel and event, so nothing is sent twice, even after a crash), then :func:`deliver_due`,
which sends what is due. A failure is retried after ``BELLWETHER_NOTIFY_RETRY_S`` seconds, doubling each time, up to
``MAX_ATTEMPTS`` tries; every attempt's outcome is in the delivery log (:func:`deliveries`).

Only alerts created after the channel, whose window ended in the last ``RECENT_DAYS`` days, are pushed (a feed's
first poll of old history does not flood anyone). Secrets (the webhook URL, the SMTP password) are stored encrypted
(engine.vault) and never logged, printed or shown back in full (:func:`describe`); error messages name the host at
most.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from urllib.parse import quote, urlsplit

from engine import access, db, i18n, settings, vault
from engine.errors import NotFound, UserError
from engine.i18n import N_, _
from engine.monitor import sources

KINDS = ("webhook", "email")
STYLES = ("json", "slack", "teams")
EVENTS = ("alerts", "runs")
MAX_ATTEMPTS = 6
RECENT_DAYS = 3
HEADLINES = 5
TIMEOUT_S = 10.0
ALL_ARTICLES = N_("all articles")


def _iso(moment: datetime | None = None) -> str:
    return (moment or datetime.now(timezone.utc)).isoformat()


# ---------------------------------------------------------------------------------------------------------------
# Channels


def add_channel(conn, name: str, kind: str, *, url: str | None = None, style: str = "json",
                host: str | None = None, port: int = 25, username: str | None = None, password: str | None = None,
                sender: str | None = None, to: str | list[str] | None = None, security: str = "none",
                events: str | list[str] = "alerts", created_by: str | None = None, actor=None) -> dict:
    """Set up a channel. Webhook: ``url`` and ``style``; e-mail: ``host``, ``port``, ``sender``, ``to`` (one or more
    addresses, comma-separated), optional ``username`` / ``password``, ``security`` none | starttls | ssl.
    Administrators only (``actor``; None: the local administrator)."""
    who = access.check(conn, actor, "notify.channels", f"channel:{name}")
    created_by = created_by or who.name
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise UserError(_("Give the channel a name (up to 80 characters), for example 'desk-slack'."))
    if conn.execute("SELECT 1 FROM notify_channels WHERE name = ?", [name]).fetchone():
        raise UserError(_("There is already a channel named '{name}'.", name=name))
    wanted = _events(events)
    if kind == "webhook":
        if style not in STYLES:
            raise UserError(_("A webhook's style is one of {styles} (not '{style}').", styles=", ".join(STYLES),
                              style=style))
        config = {"url": vault.seal(sources.check_url(url or "", _("A webhook")))}
    elif kind == "email":
        recipients = _recipients(to)
        if not host or not sender or not recipients or any("@" not in a for a in [sender, *recipients]):
            raise UserError(_("An e-mail channel needs the SMTP host, a sender address and at least one "
                              "recipient address (name@example.com)."))
        if security not in ("none", "starttls", "ssl"):
            raise UserError(_("SMTP security is 'none', 'starttls' or 'ssl'."))
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise UserError(_("The SMTP port is a whole number, for example 25, 465 or 587.")) from None
        sources.check_host(host, port, _("The mail server"))
        config = {"host": host, "port": port, "username": username or None, "password": vault.seal(password) or None,
                  "sender": sender, "to": recipients, "security": security}
        style = "email"
    else:
        raise UserError(_("A channel is a 'webhook' or 'email', not '{kind}'.", kind=kind))
    channel_id = conn["notify_channels"].insert({
        "name": name, "kind": kind, "config_json": db.dumps(config), "style": style, "events": ",".join(wanted),
        "enabled": 1, "created_at": db.now(), "created_by": created_by}).last_pk
    access.record(conn, who, "notify.channels", f"channel:{name}", {"added": kind})
    return describe(get_channel(conn, channel_id))


def _events(events: str | list[str]) -> list[str]:
    wanted = [e.strip() for e in (events.split(",") if isinstance(events, str) else events) if e.strip()]
    if not wanted or any(e not in EVENTS for e in wanted):
        raise UserError(_("Events are 'alerts', 'runs' (training runs that finished or failed) or 'alerts,runs'."))
    return wanted


def _recipients(to: str | list[str] | None) -> list[str]:
    return [a.strip() for a in (to.split(",") if isinstance(to, str) else (to or [])) if a.strip()]


def edit_channel(conn, channel: str | int, *, events: str | list[str] | None = None, enabled: bool | None = None,
                 url: str | None = None, to: str | list[str] | None = None, password: str | None = None,
                 actor=None) -> dict:
    """Change a channel in place, keeping its delivery log: what it is sent (``events``), whether it is sent anything
    (``enabled``: a paused channel queues nothing), a webhook's ``url``, an e-mail channel's recipients (``to``) or
    SMTP ``password``. What is not given stays. Administrators only."""
    row = get_channel(conn, channel)
    who = access.check(conn, actor, "notify.channels", f"channel:{row['name']}")
    config = db.loads(row.get("config_json"), {}) or {}
    changes: dict = {}
    changed: list[str] = []
    if events is not None:
        changes["events"] = ",".join(_events(events))
        changed.append("events")
    if enabled is not None:
        changes["enabled"] = int(bool(enabled))
        changed.append("enabled" if enabled else "paused")
    if url is not None:
        if row["kind"] != "webhook":
            raise UserError(_("'{name}' is an e-mail channel: it has recipients, not a URL.", name=row["name"]))
        config["url"] = vault.seal(sources.check_url(url, _("A webhook")))
        changed.append("url")
    if to is not None or password is not None:
        if row["kind"] != "email":
            raise UserError(_("'{name}' is a webhook: it has a URL, not recipients or a password.", name=row["name"]))
        if to is not None:
            recipients = _recipients(to)
            if not recipients or any("@" not in a for a in recipients):
                raise UserError(_("Give at least one recipient address (name@example.com), comma-separated."))
            config["to"] = recipients
            changed.append("recipients")
        if password is not None:
            config["password"] = vault.seal(password) or None
            changed.append("password")
    if not changed:
        raise UserError(_("Nothing to change: give the events, enable or pause it, or a new URL, recipients or "
                          "password."))
    changes["config_json"] = db.dumps(config)
    with db.transaction(conn):
        conn["notify_channels"].update(row["id"], changes)
        access.record(conn, who, "notify.channels", f"channel:{row['name']}", {"changed": changed})
    return describe(get_channel(conn, row["id"]))


def get_channel(conn, channel: str | int) -> dict:
    key = str(channel).strip()
    rows = list(conn.query("SELECT * FROM notify_channels WHERE name = ? OR (? GLOB '[0-9]*' AND id = ?)",
                           [key, key, int(key) if key.isdigit() else -1]))
    if not rows:
        raise NotFound(_("There is no channel '{channel}'. `python -m engine notify channel list` shows them.",
                         channel=channel))
    return rows[0]


def mask_url(url: str) -> str:
    """'https://hooks.slack.com/…' : the scheme and host only, never the path that holds the secret."""
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.hostname}/…" if parts.hostname else "…"


def describe(channel: dict) -> dict:
    """A channel as anyone may see it: where it goes, with the secrets left out."""
    config = db.loads(channel.get("config_json"), {}) or {}
    if channel["kind"] == "webhook":
        target = f"{mask_url(vault.unseal(config.get('url', '')))} ({channel.get('style')})"
    elif config.get("username"):
        target = _("{to} via {host}:{port} as {user} (password set)", to=", ".join(config.get("to") or []),
                   host=config.get("host"), port=config.get("port"), user=config["username"])
    else:
        target = _("{to} via {host}:{port}", to=", ".join(config.get("to") or []), host=config.get("host"),
                   port=config.get("port"))
    last = None
    return {"id": channel["id"], "name": channel["name"], "kind": channel["kind"], "target": target,
            "events": channel.get("events"), "enabled": bool(channel.get("enabled")),
            "created_at": channel.get("created_at"), "last_delivery": last}


def list_channels(conn) -> list[dict]:
    out = []
    for row in conn.query("SELECT * FROM notify_channels ORDER BY id"):
        item = describe(row)
        last = conn.execute("SELECT status, last_error, COALESCE(sent_at, created_at) FROM notify_deliveries "
                            "WHERE channel_id = ? ORDER BY id DESC LIMIT 1", [row["id"]]).fetchone()
        item["last_delivery"] = {"status": last[0], "error": i18n.shown(last[1]) or None, "at": last[2]} if last else None
        out.append(item)
    return out


def remove_channel(conn, channel: str | int, actor=None) -> None:
    row = get_channel(conn, channel)
    who = access.check(conn, actor, "notify.channels", f"channel:{row['name']}")
    with db.transaction(conn):
        access.record(conn, who, "notify.channels", f"channel:{row['name']}", {"removed": True})
        conn.execute("DELETE FROM notify_deliveries WHERE channel_id = ?", [row["id"]])
        conn.execute("DELETE FROM notify_channels WHERE id = ?", [row["id"]])


def deliveries(conn, channel: str | int | None = None, limit: int = 50) -> list[dict]:
    """The delivery log, newest first (no payload secrets: payloads hold alert facts only); errors in the current
    language."""
    where, params = ("WHERE d.channel_id = ?", [get_channel(conn, channel)["id"]]) if channel is not None else ("", [])
    return [{**row, "last_error": i18n.shown(row["last_error"]) or None} for row in conn.query(
        "SELECT d.id, c.name AS channel, d.event_key, d.status, d.attempts, d.last_error, d.created_at, d.sent_at, "
        f"d.next_attempt_at FROM notify_deliveries d JOIN notify_channels c ON c.id = d.channel_id {where} "
        "ORDER BY d.id DESC LIMIT ?", [*params, int(limit)])]


# ---------------------------------------------------------------------------------------------------------------
# Events


def monitor_link(feed_name: str, window_start: str | None, window_end: str | None, alert_id: int | None) -> str:
    query = f"feed={quote(feed_name)}"
    if window_end:
        start = (datetime.fromisoformat(window_end) - timedelta(days=30)).date().isoformat()
        query += f"&from={start}&to={window_end}"
    if alert_id:
        query += f"&alert={alert_id}"
    return f"{settings.dashboard_url()}/monitor?{query}"


def alert_payload(conn, alert: dict) -> dict:
    """What a channel is told about an alert: its facts, and a title and text in English (the words are written again
    in the sender's language when it goes out: :func:`localized`)."""
    feed = conn.execute("SELECT name FROM feeds WHERE id = ?", [alert["feed_id"]]).fetchone()
    feed_name = feed[0] if feed else f"feed {alert['feed_id']}"
    ids = db.loads(alert.get("article_ids_json"), []) or []
    headlines = []
    if ids:
        marks = ",".join("?" * len(ids))
        by_id = {r[0]: (r[1], r[2]) for r in conn.execute(
            f"SELECT id, title, source FROM articles WHERE id IN ({marks})", ids)}
        headlines = [{"title": by_id[i][0], "source": by_id[i][1]} for i in ids if i in by_id][:HEADLINES]
    payload = {"event": "alert", "alert_id": alert["id"], "feed": feed_name, "topic": alert.get("topic") or ALL_ARTICLES,
               "all_articles": not alert.get("topic"), "magnitude": alert.get("magnitude"),
               "negative_share": alert.get("negative_share") or 0.0, "baseline_mean": alert.get("baseline_mean"),
               "n_articles": alert.get("n_articles"), "window_start": alert["window_start"],
               "window_end": alert["window_end"], "headlines": headlines,
               "link": monitor_link(feed_name, alert["window_start"], alert["window_end"], alert["id"])}
    with i18n.using("en"):
        return {**payload, **_words(payload)}


def run_payload(job: dict) -> dict:
    ok = job["status"] == "succeeded"
    metrics = db.loads(job.get("metrics_json"), {}) or {}
    payload = {"event": "run_finished" if ok else "run_failed", "run_id": job["id"], "status": job["status"],
               "name": job.get("name"), "macro_f1": metrics.get("macro_f1"), "error": job.get("error"),
               "headlines": [], "link": f"{settings.dashboard_url()}/runs?run={job['id']}"}
    with i18n.using("en"):
        return {**payload, **_words(payload)}


def _words(p: dict) -> dict:
    """The title and text of a payload, in the current language, from its facts ({} for a payload without them)."""
    event = p.get("event")
    if event == "alert":
        topic = _(ALL_ARTICLES) if p.get("all_articles") or p.get("topic") in (None, ALL_ARTICLES) else p["topic"]
        title = _("Negative-news surge in {feed} ({topic})", feed=p["feed"], topic=topic)
        values = {"share": i18n.percent(p.get("negative_share") or 0.0), "n": p.get("n_articles"),
                  "start": p["window_start"], "end": p["window_end"]}
        if p.get("baseline_mean") is not None and p.get("magnitude") is not None:
            text = _("{share} of {n} articles negative in {start} to {end} against a baseline of {baseline}, "
                     "{sd} standard deviations above it.", baseline=i18n.percent(p["baseline_mean"]),
                     sd=i18n.number(p["magnitude"], 1), **values)
        else:
            text = _("{share} of {n} articles negative in {start} to {end}.", **values)
        return {"title": title, "text": text}
    if event in ("run_finished", "run_failed") and "name" in p:
        ok, name, run_id = event == "run_finished", p.get("name"), p["run_id"]
        if ok:
            title = (_("Training run {run_id} finished: {name}", run_id=run_id, name=name) if name
                     else _("Training run {run_id} finished", run_id=run_id))
            f1 = p.get("macro_f1")
            text = _("Test macro-F1 {f1}.", f1=f"{f1:.3f}") if f1 is not None else ""
        else:
            title = (_("Training run {run_id} failed: {name}", run_id=run_id, name=name) if name
                     else _("Training run {run_id} failed", run_id=run_id))
            text = i18n.shown(p.get("error"))  # the job's reason, stored in English
        return {"title": title, "text": text}
    if event == "test" and p.get("channel"):
        return {"title": _("Test message from Bellwether to '{channel}'", channel=p["channel"]),
                "text": _("If you can read this, alerts will reach this channel.")}
    return {}


def localized(payload: dict) -> dict:
    """The payload with its title and text in the current language (they are stored in English)."""
    try:
        return {**payload, **_words(payload)}
    except (KeyError, TypeError, ValueError):  # an older payload without its facts: as it was stored
        return payload


def collect(conn) -> int:
    """Queue a delivery for each new event each channel wants; returns how many were queued."""
    channels = list(conn.query("SELECT * FROM notify_channels WHERE enabled = 1"))
    if not channels:
        return 0
    recent = (datetime.now(timezone.utc) - timedelta(days=RECENT_DAYS)).date().isoformat()
    queued = 0
    for channel in channels:
        events = (channel.get("events") or "alerts").split(",")
        todo: list[tuple[str, dict]] = []
        if "alerts" in events:
            for alert in conn.query(
                    "SELECT * FROM alerts a WHERE a.created_at >= ? AND a.window_end >= ? AND a.acknowledged_at IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM notify_deliveries d WHERE d.channel_id = ? "
                    "AND d.event_key = 'alert:' || a.id) ORDER BY a.id", [channel["created_at"], recent, channel["id"]]):
                todo.append((f"alert:{alert['id']}", alert_payload(conn, alert)))
        if "runs" in events:
            for job in conn.query(
                    "SELECT * FROM jobs j WHERE j.kind = 'train' AND j.status IN ('succeeded', 'failed') "
                    "AND j.finished_at >= ? AND NOT EXISTS (SELECT 1 FROM notify_deliveries d WHERE d.channel_id = ? "
                    "AND d.event_key = 'run:' || j.id) ORDER BY j.id", [channel["created_at"], channel["id"]]):
                todo.append((f"run:{job['id']}", run_payload(job)))
        for key, payload in todo:
            queued += conn.execute(
                "INSERT OR IGNORE INTO notify_deliveries (channel_id, event_key, payload_json, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, 'pending', 0, ?, ?)",
                [channel["id"], key, db.dumps(payload), _iso(), _iso()]).rowcount
    return queued


# ---------------------------------------------------------------------------------------------------------------
# Sending


def _plain(payload: dict) -> str:
    lines = [payload["title"], "", payload.get("text") or ""]
    if payload.get("headlines"):
        lines += ["", _("Driving headlines:")] + [
            f"- {h['title']}" + (f" ({h['source']})" if h.get("source") else "") for h in payload["headlines"]]
    lines += ["", _("Open the Monitor: {link}", link=payload["link"])]
    return "\n".join(lines)


def webhook_body(style: str, payload: dict) -> dict:
    if style == "slack":
        return {"text": f"{payload['title']}: {payload.get('text', '')} <{payload['link']}|{_('Open the Monitor')}>",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _plain(payload)}}]}
    if style == "teams":
        return {"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": payload["title"],
                "themeColor": "D13438", "title": payload["title"], "text": _plain(payload).replace("\n", "  \n"),
                "potentialAction": [{"@type": "OpenUri", "name": _("Open the Monitor"),
                                     "targets": [{"os": "default", "uri": payload["link"]}]}]}
    return payload


class _CheckedSMTP(smtplib.SMTP):
    """SMTP whose connection goes to an address checked as it connects (no DNS rebinding to a private address);
    STARTTLS still verifies the server's name."""

    def _get_socket(self, host, port, timeout):
        return sources.connect_checked(host, port, timeout, "The mail server", self.source_address)


class _CheckedSMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host, port, timeout):
        sock = sources.connect_checked(host, port, timeout, "The mail server", self.source_address)
        return self.context.wrap_socket(sock, server_hostname=self._host)


# What a failed delivery says (stored in English in the delivery log, shown in the reader's language: i18n.shown).
_SEND_ERRORS = (
    N_("The webhook at {host} did not answer within {seconds} seconds."),
    N_("The webhook at {host} could not be reached."),
    N_("The webhook at {host} answered HTTP {status}."),
    N_("The mail server {host} refused the user name or password."),
    N_("The mail server {host} refused the message (SMTP {code})."),
    N_("The mail server {host}:{port} could not be reached ({error})."),
)
RETRYING = N_("{error} (try {attempt} of {tries}; retrying)")


class DeliveryFailed(UserError):
    """A delivery that failed: the message in the current language; :meth:`english` for the delivery log."""

    def __init__(self, template: str, **values):
        self.template, self.values = template, values
        super().__init__(_(template, **values))

    def english(self) -> str:
        return self.template.format(**self.values)


def send(channel: dict, payload: dict) -> None:
    """Deliver one payload now, its words in the current language; UserError in plain words (no secret in it) when
    it fails."""
    import requests

    payload = localized(payload)
    config = db.loads(channel.get("config_json"), {}) or {}
    if channel["kind"] == "webhook":
        url = vault.unseal(config.get("url", "")) or ""
        host = sources.host_of(url)
        sources.check_url(url, _("The webhook"))
        try:
            with sources.checked_session(_("The webhook")) as session:  # the address connected to is the one checked
                response = session.post(url, json=webhook_body(channel.get("style") or "json", payload),
                                        timeout=TIMEOUT_S, allow_redirects=False)
        except requests.exceptions.Timeout:
            raise DeliveryFailed(_SEND_ERRORS[0], host=host, seconds=f"{TIMEOUT_S:g}") from None
        except requests.exceptions.RequestException:
            raise DeliveryFailed(_SEND_ERRORS[1], host=host) from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(_SEND_ERRORS[2], host=host, status=response.status_code)
        return
    message = EmailMessage()
    message["Subject"] = f"[Bellwether] {payload['title']}"
    message["From"] = config["sender"]
    message["To"] = ", ".join(config["to"])
    message.set_content(_plain(payload))
    host, port = config["host"], int(config["port"])
    try:
        if config.get("security") == "ssl":
            smtp = _CheckedSMTPSSL(host, port, timeout=TIMEOUT_S, context=ssl.create_default_context())
        else:
            smtp = _CheckedSMTP(host, port, timeout=TIMEOUT_S)
        with smtp:
            if config.get("security") == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.get("username"):
                smtp.login(config["username"], vault.unseal(config.get("password")) or "")
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError:
        raise DeliveryFailed(_SEND_ERRORS[3], host=host) from None
    except smtplib.SMTPResponseException as exc:
        raise DeliveryFailed(_SEND_ERRORS[4], host=host, code=exc.smtp_code) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(_SEND_ERRORS[5], host=host, port=port, error=type(exc).__name__) from None


def _send_recorded(channel: dict, payload: dict) -> str | None:
    """Send in the current language; None when it went, else the reason (in English when it is one of ours) for the
    delivery log."""
    try:
        send(channel, payload)
    except DeliveryFailed as exc:
        return exc.english()
    except UserError as exc:
        return str(exc)
    return None


def deliver_due(conn, now: datetime | None = None) -> int:
    """Send every pending delivery whose time has come; returns how many were sent."""
    sent = 0
    for row in list(conn.query(
            "SELECT d.*, c.kind, c.style, c.config_json FROM notify_deliveries d JOIN notify_channels c "
            "ON c.id = d.channel_id WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.id",
            [_iso(now)])):
        attempts = int(row["attempts"] or 0) + 1
        error = _send_recorded(row, db.loads(row["payload_json"], {}))
        if error is not None:
            final = attempts >= MAX_ATTEMPTS
            delay = settings.notify_retry_s() * 2 ** (attempts - 1)
            if not final:
                error = RETRYING.format(error=error, attempt=attempts, tries=MAX_ATTEMPTS)
            conn.execute(
                "UPDATE notify_deliveries SET attempts = ?, last_error = ?, status = ?, next_attempt_at = ? WHERE id = ?",
                [attempts, error, "failed" if final else "pending",
                 _iso(datetime.now(timezone.utc) + timedelta(seconds=delay)), row["id"]])
            continue
        conn.execute("UPDATE notify_deliveries SET attempts = ?, status = 'sent', sent_at = ? WHERE id = ?",
                     [attempts, _iso(), row["id"]])
        sent += 1
    return sent


def send_test(conn, channel: str | int, actor=None) -> dict:
    """Send a test message now and log it; returns the delivery row (status 'sent', or 'failed' with the reason in
    the current language)."""
    row = get_channel(conn, channel)
    access.check(conn, actor, "notify.channels", f"channel:{row['name']}")
    payload = {"event": "test", "channel": row["name"], "headlines": [], "feed": None, "topic": None,
               "link": f"{settings.dashboard_url()}/monitor"}
    with i18n.using("en"):
        payload.update(_words(payload))
    error = _send_recorded(row, payload)
    status = "sent" if error is None else "failed"
    delivery_id = conn["notify_deliveries"].insert({
        "channel_id": row["id"], "event_key": f"test:{_iso()}", "payload_json": db.dumps(payload), "status": status,
        "attempts": 1, "last_error": error, "created_at": _iso(), "sent_at": _iso() if status == "sent" else None,
    }).last_pk
    return {"id": delivery_id, "channel": row["name"], "status": status, "error": i18n.shown(error) or None}
