"""A tiny OpenID Connect provider on 127.0.0.1, for single sign-on tests (Streamlit's st.login through Authlib).

It does what a real provider does on the code flow, with real signatures: discovery document, /authorize (signs in
whoever ``provider.email`` names, at once, and sends the browser back with a code), /token (an RS256-signed id_token
carrying the nonce, audience and issuer Authlib checks, exchanged once per code, PKCE S256 checked) and /jwks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import warnings
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID, CLIENT_SECRET = "bellwether-test", "test-client-secret"


class Provider:
    def __init__(self, server: ThreadingHTTPServer):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # authlib.jose is deprecated in favour of joserfc, not installed here
            from authlib.jose import JsonWebKey

        self.server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "test-key"})
        self.email = "alice@bank.example"
        self.codes: dict[str, dict] = {}
        self.signed_in: list[str] = []

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def metadata(self) -> dict:
        return {"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"]}

    def id_token(self, nonce: str | None) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from authlib.jose import jwt

        now = int(time.time())
        claims = {"iss": self.url, "sub": hashlib.sha256(self.email.encode()).hexdigest()[:16], "aud": CLIENT_ID,
                  "iat": now, "exp": now + 300, "email": self.email, "email_verified": True,
                  "name": self.email.split("@")[0].title(), **({"nonce": nonce} if nonce else {})}
        return jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, self.key).decode()


def _handler(provider: Provider):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _json(self, body: dict, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                return self._json(provider.metadata())
            if url.path == "/jwks":
                return self._json({"keys": [provider.key.as_dict(is_private=False)]})
            if url.path == "/authorize":
                if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
                    return self._json({"error": "invalid_request"}, 400)
                code = secrets.token_urlsafe(16)
                provider.codes[code] = {"nonce": query.get("nonce"), "challenge": query.get("code_challenge"),
                                        "redirect_uri": query["redirect_uri"], "email": provider.email}
                provider.signed_in.append(provider.email)
                self.send_response(302)
                self.send_header("Location", f"{query['redirect_uri']}?"
                                 + urlencode({"code": code, "state": query.get("state", "")}))
                self.end_headers()
                return None
            return self._json({"error": "not_found"}, 404)

        def do_POST(self):  # noqa: N802
            if urlsplit(self.path).path != "/token":
                return self._json({"error": "not_found"}, 404)
            body = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
            auth = self.headers.get("Authorization", "")
            basic = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
            client = basic.split(":")[0] if basic else body.get("client_id")
            secret = basic.split(":", 1)[1] if basic else body.get("client_secret")
            grant = provider.codes.pop(body.get("code", ""), None)
            if grant is None or client != CLIENT_ID or secret != CLIENT_SECRET:
                return self._json({"error": "invalid_grant"}, 400)
            if grant["challenge"]:
                verifier = body.get("code_verifier", "").encode()
                expected = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if expected != grant["challenge"]:
                    return self._json({"error": "invalid_grant", "error_description": "PKCE"}, 400)
            return self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                               "id_token": provider.id_token(grant["nonce"]), "scope": "openid email profile"})

    return Handler


@contextmanager
def oidc_provider() -> Iterator[Provider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), None)
    provider = Provider(server)
    server.RequestHandlerClass = _handler(provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()


def secrets_toml(provider: Provider, app_port: int) -> str:
    """The ``[auth]`` section the README documents, pointing at ``provider``."""
    return (f'[auth]\nredirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(16)}"\nclient_id = "{CLIENT_ID}"\n'
            f'client_secret = "{CLIENT_SECRET}"\nserver_metadata_url = "{provider.metadata_url}"\n')
