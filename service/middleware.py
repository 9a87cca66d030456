"""What every response carries and every unsafe request is checked for, as one ASGI middleware
(plain ASGI: a map tile must not pay for Starlette's BaseHTTPMiddleware).

- Security headers: a Content-Security-Policy that allows only this server's own scripts (the
  pages have no inline script; styles may be inline), no framing, no MIME sniffing, and no
  Referer to other sites.
- Cross-site request forgery: a POST, PUT, PATCH or DELETE that a browser sends from another
  site carries the victim's session cookie; it is refused (403) when the browser says it came
  from another site (`Sec-Fetch-Site`), or, from browsers that do not send that, when its
  `Origin` is not this server. Requests with an API token (`Authorization`) are not affected: a
  browser does not add that header across sites. Logging in is checked too (login CSRF).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def cross_site(headers: dict[bytes, bytes], public_host: str | None = None) -> bool:
    """Whether a browser sent this request from a page of another site."""
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site not in (b"same-origin", b"none")
    origin = headers.get(b"origin")
    if origin is None:
        return False  # no browser sends a cross-site POST without Origin any more
    netloc = urlsplit(origin.decode("latin-1")).netloc
    if not netloc:
        return True  # "null": a sandboxed frame, a data: URL
    host = headers.get(b"host", b"").decode("latin-1")
    return netloc != host and netloc != public_host


class Hardening:
    def __init__(self, app: ASGIApp, public_url: str | None = None, max_body_kb: int = 0) -> None:
        self.app = app
        self.public_host = urlsplit(public_url).netloc if public_url else None
        self.too_large = json.dumps(
            {
                "error": "too_large",
                "detail": f"The request body is larger than the {max_body_kb} KB this service "
                "accepts here (KHET_MAX_BODY_KB); send imagery as an upload.",
            }
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        too_large = False

        async def send_with_headers(message: Message) -> None:
            nonlocal too_large
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if (
                    message["status"] == 413
                    and (b"content-type", b"text/plain; charset=utf-8") in headers
                ):
                    # Starlette's body limit answers a too long Content-Length itself, in
                    # plain text: the same JSON as every other error instead.
                    too_large = True
                    headers = [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(self.too_large)).encode()),
                    ]
                present = {k.lower() for k, _ in headers}
                message["headers"] = headers + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in present
                ]
            elif too_large and message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": self.too_large}
            await send(message)

        if scope["method"] not in SAFE_METHODS:
            headers = dict(scope["headers"])
            if b"authorization" not in headers and cross_site(headers, self.public_host):
                body = json.dumps(
                    {
                        "error": "cross_site",
                        "detail": "This request came from another web site and was refused; "
                        "use Khet's own pages.",
                    }
                ).encode()
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send_with_headers)
