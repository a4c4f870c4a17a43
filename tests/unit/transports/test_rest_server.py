"""The response transport wrapper: one write per response, nothing held back otherwise."""

from __future__ import annotations

from typing import Any

from shipyard.transports.rest.server import _HeadWithBody


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, data: Any) -> None:
        self.calls.append(("writelines", b"".join(data)))

    def close(self) -> None:
        self.calls.append(("close", None))


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_response_head_goes_out_with_its_body_in_one_call() -> None:
    transport = FakeTransport()
    wrapped = _HeadWithBody(transport)
    wrapped.write(HEAD)
    assert transport.calls == []
    wrapped.write(b"{}")
    wrapped.write(b"more")
    assert transport.calls == [("writelines", HEAD + b"{}"), ("write", b"more")]


def test_interim_responses_pass_and_other_calls_send_a_held_head_first() -> None:
    transport = FakeTransport()
    wrapped = _HeadWithBody(transport)
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    wrapped.write(HEAD)
    wrapped.close()
    assert transport.calls[1:] == [("write", HEAD), ("close", None)]
