"""What stands between the network and the model: the bearer key, the request body limit, a
clean 500 for the unexpected, and the refusal to listen beyond loopback without a key."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from harness.errors import HarnessError

log = logging.getLogger(__name__)


def error_body(status: int, message: str, code: str | None = None) -> dict:
    """OpenAI's error shape."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class BodyTooLarge(HTTPException):
    """Raised while the body is being received, so FastAPI passes it on as it is (other errors
    during body parsing become a generic 400)."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is larger than this server's limit of {limit} "
                              f"bytes (serve.max_body_bytes)")


class Guard:
    """Pure ASGI middleware around the app (a BaseHTTPMiddleware would buffer and re-wrap
    bodies, which is what this must avoid).

    - `api_key`: every request needs `Authorization: Bearer <api_key>`, else 401.
    - `max_body_bytes`: a declared Content-Length above it is refused with 413 before a byte of
      the body is read; a chunked body is counted as it arrives and refused once past it.
    - An exception nobody handled becomes a JSON 500 sent here, without a traceback. Starlette
      would send its 500 and then re-raise, and uvicorn answers an exception raised after the
      response started by closing the connection: the client's next request on it was reset.
    """

    def __init__(self, app: Any, max_body_bytes: int, api_key: str | None = None):
        self.app, self.max_body_bytes = app, max_body_bytes
        self._expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self._expected is not None and not hmac.compare_digest(
                headers.get("authorization", "").encode(), self._expected):
            await _respond(send, 401, "missing or wrong API key: send 'Authorization: Bearer "
                                      "<key>' with the key the server was started with",
                           "invalid_api_key")
            return
        declared = headers.get("content-length")
        if declared is not None and (not (declared.isascii() and declared.isdigit()) or int(declared) > self.max_body_bytes):
            too_large = BodyTooLarge(self.max_body_bytes)
            await _respond(send, 413, too_large.detail, "request_too_large")
            return

        received, started = 0, False

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except Exception as exc:
            if started:  # nothing sensible can be sent any more
                raise
            log.exception("unexpected error serving %s %s", scope.get("method"), scope.get("path"))
            await _respond(send, 500, f"internal error ({type(exc).__name__}); the server log "
                                      f"has the details", "internal_error")


async def _respond(send: Any, status: int, message: str, code: str) -> None:
    body = json.dumps(error_body(status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def is_loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback address."""
    if not host:
        return False  # uvicorn binds every interface for an empty host
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        raise HarnessError(f"serve.host={host!r} does not resolve ({e}). Fix: use an address "
                           f"such as 127.0.0.1.") from e
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, api_key_env: str | None, api_key: str | None,
               allow_unauthenticated: bool) -> None:
    """Refuse to listen beyond loopback with no key, unless that was explicitly allowed."""
    if api_key or allow_unauthenticated or is_loopback(host):
        return
    where = (f"the environment variable {api_key_env} (serve.api_key_env) is not set"
             if api_key_env else "serve.api_key_env is empty")
    raise HarnessError(
        f"serve.host={host} is not a loopback address and {where}, so anyone who can reach it "
        f"could use the model. Fix: export {api_key_env or 'HARNESS_SERVE_API_KEY'}=<a secret> "
        f"(clients send it as their API key), or serve.host=127.0.0.1, or, behind a proxy that "
        f"authenticates, serve.allow_unauthenticated=true.")
