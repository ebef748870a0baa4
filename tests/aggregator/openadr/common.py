"""Helpers the OpenADR tests share: an aggregator whose OpenADR traffic is checked against the spec.

The official OpenADR 3.1.0 OpenAPI document (shipped in ``aggregator/openadr/spec``) validates,
with openapi-core, each request Jeisson's VTN receives and each response it sends, whoever the
client is (ElaadNL's ``openadr3-client``, or Jeisson's own VEN). Fixtures live in conftest.py.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.version import OADRVersion
from openapi_core import Config, OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest, AIOHTTPOpenAPIWebResponse

from aggregator.openadr import BASE_PATH
from aggregator.openadr.schema import spec_document
from aggregator.server import ServerConfig, create_app
from tests.aggregator.common import RunningServer

JEISSON_AGENT = "jeisson-aggregator/"
"""The User-Agent of Jeisson's VEN (tests' raw aiohttp requests and openadr3-client differ)."""

VTN_ON_BOTH_DATABASES = pytest.mark.parametrize(
    "vtn_database", ["sqlite", "postgresql"], indirect=True
)
"""Run a test with Jeisson's VTN (the ``vtn_server`` fixture) on SQLite and on PostgreSQL."""
VEN_ON_BOTH_DATABASES = pytest.mark.parametrize(
    "ven_database", ["sqlite", "postgresql"], indirect=True
)
"""Run a test with Jeisson as a VEN (the ``jeisson`` fixture) on SQLite and on PostgreSQL."""

KNOWN_SPEC_DEFECT = "'VEN' is not one of ['BL_VEN_REQUEST']"
"""The 3.1.0 ``ven`` schema is allOf(objectMetadata, BlVenRequest): objectType must be one of the
object types (VEN) and also BL_VEN_REQUEST, which no object can be. Jeisson serves ``VEN`` (what
objectMetadata and notifications expect); this one contradiction is not counted as a failure."""


@dataclass
class SpecChecker:
    """Validates OpenADR traffic against the spec and remembers what it saw.

    Responses are Jeisson's: any violation fails the test. Requests come from whichever client
    the test uses: their violations are kept apart (``request_violations``) so a test can hold
    Jeisson's own VEN to the spec and list a third-party client's known deviations.
    """

    openapi: OpenAPI
    checked: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    request_violations: list[str] = field(default_factory=list)
    jeisson_request_violations: list[str] = field(default_factory=list)
    """Requests sent by Jeisson's own VEN (aiohttp) that break the spec: must stay empty."""

    @staticmethod
    def errors(failure: Exception | None) -> list[str]:
        """Return the reasons of a validation failure, without the known spec defect."""
        if failure is None:
            return []
        reasons = [str(error).splitlines()[0] for error in _schema_errors(failure)]
        if reasons and all(KNOWN_SPEC_DEFECT in reason for reason in reasons):
            return []
        return reasons or [str(failure)]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Validate OpenADR requests and responses passing through the aggregator."""
        if not request.path.startswith(BASE_PATH):
            response: web.StreamResponse = await handler(request)
            return response
        body = await request.read()
        openapi_request = AIOHTTPOpenAPIWebRequest(request, body=body)
        label = f"{request.method} {request.path}"
        result = self.openapi.unmarshal_request(openapi_request)
        for error in self.errors(result.errors[0] if result.errors else None):
            self.request_violations.append(f"{label}: {error}")
            if JEISSON_AGENT in request.headers.get("User-Agent", ""):
                self.jeisson_request_violations.append(f"{label}: {error}")
        response = await handler(request)
        assert isinstance(response, web.Response)
        outcome = self.openapi.unmarshal_response(
            openapi_request, AIOHTTPOpenAPIWebResponse(response)
        )
        for error in self.errors(outcome.errors[0] if outcome.errors else None):
            self.violations.append(f"response {label} {response.status}: {error}")
        self.checked.append(f"{label} {response.status}")
        return response


def _schema_errors(failure: BaseException) -> list[BaseException]:
    """Return the innermost schema errors behind an openapi-core validation failure."""
    found: list[BaseException] = []
    current: BaseException | None = failure
    while current is not None:
        found.extend(getattr(current, "schema_errors", ()))
        current = current.__cause__
    return found


def spec_checker() -> SpecChecker:
    """Return a checker of the OpenADR 3.1.0 document, served at 127.0.0.1's BASE_PATH."""
    document = copy.deepcopy(spec_document())
    document["servers"] = [{"url": f"http://127.0.0.1{BASE_PATH}"}]
    # The document itself does not pass openapi-spec-validator (BlVenRequest.targets has the
    # default "null          -", a typo for null): check traffic against it, not it.
    return SpecChecker(OpenAPI.from_dict(document, config=Config(spec_validator_cls=None)))


@dataclass
class CheckedServer(RunningServer):
    """A real aggregator with the OpenADR spec checker in its middleware chain."""

    checker: SpecChecker = field(default_factory=spec_checker)

    async def start(self) -> None:
        """Start the aggregator with the spec checker."""
        config = ServerConfig(
            db_url=self.db_url or f"sqlite:///{self.db_path}", negotiation=self.settings
        )
        app = create_app(config)
        app.middlewares.append(self.checker.middleware)
        self.runner = web.AppRunner(app, shutdown_timeout=2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        if not self.operator_token:
            self.operator_token = await self.store.create_operator_token("tests")

    @property
    def vtn_url(self) -> str:
        """Return the base URL of the aggregator's VTN."""
        return self.url + BASE_PATH

    async def add_client(self, name: str, role: str) -> tuple[str, str]:
        """Create a VTN client through the operator API; return (client_id, secret)."""
        _, body = await self.request(
            "POST", "/api/v1/openadr/clients", {"name": name, "role": role}, expect=201
        )
        return body["client_id"], body["client_secret"]

    async def client_token(self, name: str, role: str) -> str:
        """Create a VTN client and return a bearer token of it (for raw HTTP requests)."""
        client_id, secret = await self.add_client(name, role)
        assert self.session is not None
        form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        async with self.session.post(f"{self.vtn_url}/auth/token", data=form) as response:
            assert response.status == 200
            return str((await response.json())["access_token"])

    async def read(self, token: str, path: str) -> Any:
        """GET an OpenADR path of the VTN with a bearer token; return the JSON."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.get(f"{self.vtn_url}/{path}", headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


type ServerFactory = Callable[[str], CheckedServer]


async def business_logic(server: CheckedServer, name: str = "utility") -> Any:
    """Return openadr3-client's business-logic client (a utility) on a new BL client of the VTN."""
    client_id, secret = await server.add_client(name, "bl")
    return BusinessLogicHttpClientFactory.create_http_bl_client(
        vtn_base_url=server.vtn_url,
        client_id=client_id,
        client_secret=secret,
        token_url=f"{server.vtn_url}/auth/token",
        allow_insecure_http=True,
        version=OADRVersion.OADR_310,
    )
