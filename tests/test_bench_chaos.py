"""The infrastructure soak's parts without the soak: its fault schedule, its proxy, its checker's judgements."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from bench.chaos import faults, history
from bench.chaos.proxy import FaultProxy
from bench.chaos.workload import BUSINESS, PLAN_KEY, Shop
from participants.checkout.sagas import PlaceOrder
from sagas.states import EventType, RunStatus, StepStatus

TIMEOUT = 10.0  # generous: a socket read that should succeed at once


def test_the_same_seed_schedules_the_same_faults_and_the_default_soak_every_kind_at_least_20_times() -> None:
    schedule = faults.schedule(19, 1800, 5)

    assert schedule == faults.schedule(19, 1800, 5)
    assert schedule != faults.schedule(20, 1800, 5)
    assert min(Counter(fault.kind for fault in schedule)[kind] for kind in faults.KINDS) >= 20
    assert {fault.kind for fault in faults.schedule(19, 60, 3, ("pg_cut", "redis_wipe"))} == {"pg_cut", "redis_wipe"}


@pytest.fixture
def echo() -> Iterator[tuple[int, set[int]]]:
    """A server on loopback that sends back what it gets; its port, and the ports its clients came from."""
    server = socket.create_server(("127.0.0.1", 0))
    peers: set[int] = set()

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            peers.add(peer[1])
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], peers
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := _recv(conn):
            conn.sendall(data)


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(1024)
    except OSError:
        return b""


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy()
    yield proxy
    proxy.close()


def test_the_proxy_forwards_holds_back_during_a_stall_and_cuts(echo: tuple[int, set[int]], proxy: FaultProxy) -> None:
    server_port, peers = echo
    port = proxy.add("echo", server_port)
    client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    client.sendall(b"ping")
    assert client.recv(1024) == b"ping"
    assert proxy.client_ports("echo") == peers  # how the server knows the proxied client (pg_terminate's filter)

    proxy.stall("echo", 3600)
    client.sendall(b"held")
    client.settimeout(0.5)
    with pytest.raises(TimeoutError):
        client.recv(1024)  # nothing comes back while the route is stalled
    proxy.calm()
    client.settimeout(TIMEOUT)
    assert client.recv(1024) == b"held"  # and what was held back comes once it flows again

    assert proxy.cut("echo") == 1
    assert _recv(client) == b""  # the connection is gone
    client.close()


def _event(seq: int, type_: str, step: str) -> Any:
    return SimpleNamespace(seq=seq, type=type_, step=step)


def _order_run(**fields: Any) -> Any:
    return SimpleNamespace(saga_name=PlaceOrder.name, version=PlaceOrder.version, payload={}, **fields)


def _undo_log(order: list[str]) -> list[Any]:
    """A PlaceOrder log: three steps succeed, then their compensations start and succeed in ``order``."""
    log = [_event(seq, EventType.STEP_SUCCEEDED, name)
           for seq, name in enumerate(["create_order", "reserve_stock", "charge_payment"], start=1)]  # fmt: skip
    for name in order:
        log.append(_event(len(log) + 1, EventType.COMPENSATION_STARTED, name))
        log.append(_event(len(log) + 1, EventType.COMPENSATION_SUCCEEDED, name))
    return log


def test_compensations_in_reverse_order_pass_the_checker() -> None:
    log = _undo_log(["charge_payment", "reserve_stock", "create_order"])

    assert history._compensation_order(_order_run(), log) == []


def test_a_compensation_started_before_the_one_it_must_follow_settled_is_misordered() -> None:
    log = _undo_log(["reserve_stock", "charge_payment", "create_order"])

    found = history._compensation_order(_order_run(), log)

    assert [category for category, _ in found] == ["misordered"]
    assert "charge_payment" in found[0][1]


def test_a_compensation_that_succeeded_twice_is_doubled() -> None:
    log = _undo_log(["charge_payment", "charge_payment", "reserve_stock", "create_order"])

    assert ("doubled", "charge_payment's compensation succeeded 2 times") in history._compensation_order(
        _order_run(), log
    )


SHOP = Shop(accounts=[1, 2], refunds_down=2, skus=[], flights=[], hotels=[], car_classes=[], blocked="")


def _step(name: str, status: str, code: str = "") -> Any:
    return SimpleNamespace(name=name, status=status, error={"code": code} if code else None)


def test_a_failed_run_is_settled_only_for_the_failure_it_planned() -> None:
    refused = {"send_confirmation": _step("send_confirmation", StepStatus.FAILED, BUSINESS)}
    planned = _order_run(status=RunStatus.FAILED)
    planned.payload = {PLAN_KEY: {"send_confirmation": "business"}}
    assert history._planned_failure(planned, refused, SHOP) == ""
    assert "send_confirmation failed" in history._planned_failure(_order_run(), refused, SHOP)

    gave_up = {"charge_payment": _step("charge_payment", StepStatus.COMPENSATION_FAILED, history.REFUND_DOWN)}
    refunds_down = _order_run()
    refunds_down.payload = {"account_id": 2}
    assert history._planned_failure(refunds_down, gave_up, SHOP) == ""
    assert "compensation gave up" in history._planned_failure(_order_run(), gave_up, SHOP)
