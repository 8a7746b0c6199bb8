"""The injector's HTTPS server: POST /mutate, GET /healthz, GET /readyz.

A body that is not an AdmissionReview v1 answers HTTP 400 with
``{"error": "bad_request", "message": ...}``; a failed AgentCache lookup answers
503 (so the webhook's failurePolicy decides); every other answer is an
AdmissionReview. The serving certificate is re-read every ``refresh_seconds``
and swapped into the live SSL context, so rotation needs no restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl

from aiohttp import web

from . import certs
from .admission import MalformedReview, decide, needs_lookup, parse_review
from .kubeapi import CacheLookup
from .patch import SidecarDefaults
from .tls import CertificateSource

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024  # above the API server's 3 MiB request limit


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


class Injector:
    def __init__(
        self,
        lookup: CacheLookup,
        settings: SidecarDefaults,
        certificates: CertificateSource,
        refresh_seconds: float = 300.0,
    ):
        self.lookup, self.settings, self.certificates = lookup, settings, certificates
        self.refresh_seconds = refresh_seconds
        self.ssl_context: ssl.SSLContext | None = None
        self._serving: bytes | None = None
        self._runner: web.AppRunner | None = None
        self._refresher: asyncio.Task | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/mutate", self.mutate)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        return app

    async def mutate(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
            review = json.loads(body)
            admission = parse_review(review)
        except (ValueError, UnicodeDecodeError) as error:  # MalformedReview and JSONDecodeError are ValueErrors
            message = str(error) if isinstance(error, MalformedReview) else f"the body is not JSON: {error}"
            log.warning("rejected a malformed AdmissionReview: %s", message)
            return _error(400, "bad_request", message)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes")
        caches: list[dict] = []
        if needs_lookup(admission):
            try:
                caches = await self.lookup.caches_named(admission.cache_name, admission.namespace)
            except Exception as error:  # the API server is down or refuses: let failurePolicy decide
                log.error("cannot look up AgentCache %s/%s: %s", admission.namespace, admission.cache_name, error)
                return _error(503, "lookup_failed", f"cannot read AgentCache {admission.cache_name!r}: {error}")
        answer = decide(admission, caches, self.settings)
        outcome = answer["response"]
        if not outcome["allowed"]:
            log.info("refused pod in %s: %s", admission.namespace, outcome["status"]["message"])
        return web.json_response(answer)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        if self._serving is None:
            return _error(503, "not_ready", "no serving certificate loaded")
        return web.json_response({"status": "ready"})

    async def reload_certificate(self) -> bool:
        """Load the current certificate into the SSL context; True when it changed."""
        cert, key = await self.certificates.load()
        if cert == self._serving:
            return False
        self.ssl_context = certs.server_ssl_context(cert, key, context=self.ssl_context)
        self._serving = cert
        log.info("serving certificate loaded (valid until %s)", certs.not_valid_after(cert))
        return True

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.reload_certificate()
            except Exception as error:  # keep serving with the current certificate and try again later
                log.error("certificate refresh failed: %s", error)

    async def start(self, host: str = "0.0.0.0", port: int = 10250) -> int:
        """Serve until ``stop``; returns the bound port (``port=0`` picks a free one)."""
        await self.reload_certificate()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.ssl_context, backlog=512)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._refresher = asyncio.create_task(self._refresh_forever())
        log.info("injector listening on https://%s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
