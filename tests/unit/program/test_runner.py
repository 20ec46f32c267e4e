"""The program runner: exit statuses and messages; the lifecycle closes whatever happened."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field

import pytest

from program.config import ConfigError
from program.runner import run_program, run_until_signalled, until_stopped


@dataclass
class Config:
    log_level: str = "warning"


class FailedError(Exception):
    pass


def test_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    def bad() -> Config:
        raise ConfigError("port", "not an integer", "--port")

    def fails(config: Config) -> int:
        raise FailedError("cannot start: no such interface")

    assert run_program("prog", bad, (ConfigError,), lambda c: 0, (FailedError,)) == 2
    assert capsys.readouterr().err == "prog: bad configuration: port (from --port): not an integer\n"
    assert run_program("prog", Config, (ConfigError,), fails, (FailedError,)) == 1
    assert capsys.readouterr().err == "prog: cannot start: no such interface\n"
    assert run_program("prog", Config, (ConfigError,), lambda c: 7, (FailedError,), quiet=("chatty",)) == 7


@dataclass
class Program:
    fail_open: bool = False
    calls: list[str] = field(default_factory=list)

    def open(self) -> None:
        self.calls.append("open")
        if self.fail_open:
            raise FailedError("open")

    async def run(self, stop: asyncio.Event) -> int:
        self.calls.append("run")
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
        await stop.wait()
        return 3

    def close(self) -> None:
        self.calls.append("close")


def test_run_until_signalled_runs_until_sigterm_and_closes() -> None:
    program = Program()
    assert run_until_signalled(program) == 3
    assert program.calls == ["open", "run", "close"]


def test_run_until_signalled_runs_on_the_loop_factorys_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        loops.append(asyncio.new_event_loop())
        return loops[-1]

    class OnLoop(Program):
        async def run(self, stop: asyncio.Event) -> int:
            assert asyncio.get_running_loop() is loops[0]
            return await super().run(stop)

    program = OnLoop()
    assert run_until_signalled(program, loop_factory=factory) == 3
    assert program.calls == ["open", "run", "close"]
    assert len(loops) == 1 and loops[0].is_closed()


def test_an_open_error_closes_and_propagates() -> None:
    program = Program(fail_open=True)
    with pytest.raises(FailedError):
        run_until_signalled(program)
    assert program.calls == ["open", "close"]


@dataclass
class Component:
    name: str
    task: asyncio.Task[None] | None = None

    def failure(self) -> str | None:
        return f"{self.name}: cannot listen" if self.task is not None and self.task.done() else None


def test_until_stopped_returns_when_stopped_or_a_component_ends() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        stop = asyncio.Event()
        idle = Component("metrics", asyncio.create_task(asyncio.sleep(3600)))
        asyncio.get_running_loop().call_later(0.01, stop.set)
        stopped = await until_stopped(stop, idle, Component("never started"))
        assert idle.task is not None
        idle.task.cancel()
        failed = Component("health", asyncio.create_task(asyncio.sleep(0)))
        return stopped, await until_stopped(asyncio.Event(), failed)

    assert asyncio.run(scenario()) == (None, "health: cannot listen")
