"""The fleet simulator: many virtual homes, enrolled and connected like real ones, in one process.

:class:`Fleet` adds homes through the operator REST API, enrols each with its one-time code
(:func:`jeisson.client.enroll`), and connects each with its own
:class:`~jeisson.client.HomeClient` on one shared aiohttp session; a
:class:`~aggregator.simulation.agent.HomeAgent` then answers offers and awards for it. Tests and the
demo use :meth:`Fleet.drop` (a home falls off the network), :meth:`Fleet.reconnect` and
:meth:`Fleet.opt_out`. :func:`run_fleet` is ``jeisson-aggregator simulate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self

import aiohttp

from aggregator import __version__
from aggregator.simulation.agent import HomeAgent
from aggregator.simulation.home import HomeTiming, VirtualHome
from aggregator.simulation.loads import random_loads
from jeisson.client import HomeClient, enroll
from jeisson.common.errors import AuthenticationFailed, CannotConnect, JeissonError

_LOGGER = logging.getLogger(__name__)

HOMES_PATH: Final = "/api/v1/homes"
REQUEST_TIMEOUT_S: Final = 30.0
PROGRESS_EVERY: Final = 100
"""Log enrolment progress every this many homes."""
_CREATED: Final = 201


class SimulatorError(Exception):
    """The simulator could not set up its homes (bad operator token, server unreachable)."""


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How a fleet is set up and how its homes behave."""

    timing: HomeTiming = field(default_factory=HomeTiming)
    enrol_concurrency: int = 16
    """Homes added and enrolled at the same time."""
    connect_concurrency: int = 64
    """Homes saying hello at the same time (the rest wait, so start-up does not time out)."""
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    request_timeout_s: float = REQUEST_TIMEOUT_S
    name_prefix: str = "sim-home"
    software_version: str = f"jeisson-sim/{__version__}"


@dataclass(slots=True)
class _Member:
    """Everything the fleet keeps for one home (the token never leaves the fleet)."""

    index: int
    home: VirtualHome
    agent: HomeAgent
    token: str = field(repr=False)
    client: HomeClient | None = None
    runner: asyncio.Task[None] | None = None


class Fleet:
    """Virtual homes sharing one aiohttp session, enrolled with and connected to one aggregator."""

    def __init__(
        self,
        url: str,
        operator_token: str,
        *,
        seed: int = 1,
        config: FleetConfig | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """Prepare a fleet for the aggregator at ``url``; nothing happens until :meth:`start`."""
        self.url = url.rstrip("/")
        self.seed = seed
        self.config = config or FleetConfig()
        self._operator_token = operator_token
        self._own_session = session is None
        self._session = session
        self._members: dict[str, _Member] = {}
        self._next_index = 0

    @property
    def session(self) -> aiohttp.ClientSession:
        """Return the shared session (created on first use, with no connection limit)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    @property
    def homes(self) -> list[VirtualHome]:
        """Return every home of the fleet, in the order they were added."""
        return [member.home for member in self._members.values()]

    def home(self, home_id: str) -> VirtualHome:
        """Return the home with ``home_id`` (KeyError if it is not in this fleet)."""
        return self._members[home_id].home

    def agent(self, home: VirtualHome) -> HomeAgent:
        """Return the agent driving ``home``."""
        return self._member(home).agent

    def is_connected(self, home: VirtualHome) -> bool:
        """Return True while ``home`` has a live session with the aggregator."""
        client = self._member(home).client
        return client is not None and client.connected

    @property
    def connected(self) -> int:
        """Return how many homes are connected right now."""
        return sum(self.is_connected(member.home) for member in self._members.values())

    def _member(self, home: VirtualHome) -> _Member:
        try:
            return self._members[home.home_id]
        except KeyError:
            raise KeyError(f"{home.name} is not a home of this fleet") from None

    async def __aenter__(self) -> Self:
        """Return the fleet; :meth:`close` runs on exit."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the fleet."""
        await self.close()

    # --- adding homes -----------------------------------------------------------------

    async def start(self, count: int) -> list[VirtualHome]:
        """Add, enrol and connect ``count`` new homes; return them once all said hello.

        Raises SimulatorError when homes cannot be added or enrolled.
        """
        homes = await self.add_homes(count)
        await self.connect(homes)
        return homes

    async def add_homes(self, count: int) -> list[VirtualHome]:
        """Add ``count`` homes over the REST API and enrol each (not yet connected)."""
        if count < 0:
            raise ValueError("count must not be negative")
        indexes = range(self._next_index, self._next_index + count)
        self._next_index += count
        limit = asyncio.Semaphore(self.config.enrol_concurrency)
        done = 0

        async def add(index: int) -> _Member:
            nonlocal done
            async with limit:
                member = await self._enrol(index)
            done += 1
            if done % PROGRESS_EVERY == 0:
                _LOGGER.info("Enrolled %d/%d homes", done, count)
            return member

        members = await asyncio.gather(*(add(index) for index in indexes))
        for member in members:
            self._members[member.home.home_id] = member
        _LOGGER.info("Added and enrolled %d homes", count)
        return [member.home for member in members]

    async def _enrol(self, index: int) -> _Member:
        name = f"{self.config.name_prefix}-{index:04d}"
        code = await self._add_home(name)
        try:
            enrolment = await enroll(
                self.session, self.url, code, request_timeout=self.config.request_timeout_s
            )
        except JeissonError as err:
            raise SimulatorError(f"{name}: enrolment failed: {err}") from err
        rng = random.Random(f"{self.seed}:{index}")
        home = VirtualHome(
            name,
            random_loads(rng),
            rng=rng,
            timing=self.config.timing,
            home_id=enrolment.home_id,
        )
        _LOGGER.debug("%s enrolled as %s", name, enrolment.home_id)
        return _Member(index=index, home=home, agent=HomeAgent(home), token=enrolment.token)

    async def _add_home(self, name: str) -> str:
        """Add one home over the REST API; return its one-time enrolment code."""
        headers = {"Authorization": f"Bearer {self._operator_token}"}
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        try:
            async with self.session.post(
                self.url + HOMES_PATH, json={"name": name}, headers=headers, timeout=timeout
            ) as response:
                if response.status != _CREATED:
                    body = await response.text()
                    raise SimulatorError(
                        f"adding {name} failed: HTTP {response.status} {body[:200]}"
                    )
                payload = await response.json()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise SimulatorError(f"cannot reach {self.url} to add {name}: {err}") from err
        code = payload.get("code") if isinstance(payload, dict) else None
        if not isinstance(code, str):
            raise SimulatorError(f"adding {name}: the answer has no enrolment code")
        return code

    # --- connections ------------------------------------------------------------------

    async def connect(self, homes: Sequence[VirtualHome]) -> None:
        """Connect homes (a bounded number at a time) and keep them connected.

        A home that cannot connect now keeps retrying in the background with backoff.
        """
        limit = asyncio.Semaphore(self.config.connect_concurrency)

        async def connect_one(member: _Member) -> None:
            async with limit:
                await self._open(member)

        await asyncio.gather(*(connect_one(self._member(home)) for home in homes))
        _LOGGER.info("%d/%d homes connected", self.connected, len(self._members))

    def _new_client(self, member: _Member) -> HomeClient:
        config = self.config
        return HomeClient(
            self.url,
            member.token,
            session=self.session,
            software_version=config.software_version,
            inventory_provider=member.home.inventory,
            held_awards_provider=member.home.held_awards,
            request_timeout=config.request_timeout_s,
            backoff_base=config.backoff_base_s,
            backoff_max=config.backoff_max_s,
            rng=random.Random(f"{self.seed}:{member.index}:client"),
        )

    async def _open(self, member: _Member) -> None:
        """Give a home a fresh client, connect it once, then let it run (and reconnect)."""
        client = self._new_client(member)
        member.client = client
        member.agent.attach(client)
        try:
            await client.connect()
        except CannotConnect as err:
            _LOGGER.warning("%s cannot connect yet (%s); retrying", member.home.name, err)
        except AuthenticationFailed as err:
            raise SimulatorError(f"{member.home.name}: {err}") from err
        member.runner = asyncio.create_task(client.run(), name=f"sim-client-{member.index}")
        member.runner.add_done_callback(self._client_stopped)

    @staticmethod
    def _client_stopped(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            _LOGGER.error("A simulated home stopped: %s", error)

    async def _close_client(self, member: _Member) -> None:
        member.agent.detach()
        client, member.client = member.client, None
        if client is not None:
            await client.close()
        runner, member.runner = member.runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.wait({runner})

    async def drop(self, home: VirtualHome) -> None:
        """Cut a home's connection, as if its network failed; it does not reconnect by itself.

        The home keeps carrying out what it holds (restores at the window end on its own clock).
        """
        await self._close_client(self._member(home))
        _LOGGER.info("%s dropped off (connection closed)", home.name)

    async def reconnect(self, home: VirtualHome) -> None:
        """Bring a dropped home back; its hello reports the awards it still holds."""
        member = self._member(home)
        await self._close_client(member)
        await self._open(member)
        _LOGGER.info("%s reconnected", home.name)

    async def opt_out(self, home: VirtualHome, event_id: str, load_id: str | None = None) -> None:
        """Have a home opt out of an event (or one load of it), as its owner would."""
        await self.agent(home).opt_out(event_id, load_id)

    async def close(self) -> None:
        """Disconnect every home, stop their tasks and close the session if the fleet made it."""
        members = list(self._members.values())
        await asyncio.gather(*(self._close_client(member) for member in members))
        await asyncio.gather(*(member.agent.close() for member in members))
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


async def run_fleet(
    url: str,
    operator_token: str,
    *,
    homes: int,
    seed: int,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float | int]:
    """Run ``homes`` virtual homes against the aggregator at ``url``; return what they did.

    They run until ``duration`` seconds passed or ``stop`` is set (without either: until
    cancelled). ``progress`` receives a line when the fleet is up and when it stops. Raises
    :class:`SimulatorError` when the homes cannot be set up.
    """
    if homes < 1:
        raise SimulatorError("--homes must be at least 1")
    tell = progress or _LOGGER.info
    loop = asyncio.get_running_loop()
    async with Fleet(url, operator_token, seed=seed) as fleet:
        began = loop.time()
        tell(f"Enrolling and connecting {homes} simulated homes to {url}")
        await fleet.start(homes)
        flexible = sum(home.flexible_kw for home in fleet.homes)
        tell(
            f"{fleet.connected} homes connected in {loop.time() - began:.1f} s, "
            f"{flexible:.1f} kW flexible; running "
            + (f"for {duration:.0f} s" if duration else "until Ctrl-C")
        )
        running = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for((stop or asyncio.Event()).wait(), timeout=duration)
        stats: dict[str, float | int] = {
            "homes": len(fleet.homes),
            "flexible_kw": round(flexible, 3),
            "awards": sum(len(home.holdings) for home in fleet.homes),
            "restored": sum(len(home.restores) for home in fleet.homes),
            "ran_s": round(loop.time() - running, 1),
        }
        tell(f"Stopping {stats['homes']} homes")
        return stats
