"""HeadWithBody (services/ingest/server.py): a response's head and first body part leave in one
write, and nothing is lost or reordered on the way."""

from __future__ import annotations

from eventpipe.ingest.server import HeadWithBody

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    """A transport that keeps what was written, in order (the real one sends it)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_the_head_leaves_with_the_first_body_write_and_later_parts_follow_as_written():
    sent = Recorder()
    transport = HeadWithBody(sent)  # type: ignore[arg-type]
    transport.write(HEAD)
    assert sent.writes == []
    transport.write(b"{}")
    transport.write(b"more")
    assert sent.writes == [HEAD + b"{}", b"more"]


def test_100_continue_goes_at_once_and_the_head_is_still_held():
    sent = Recorder()
    transport = HeadWithBody(sent)  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    transport.write(HEAD)
    transport.write(b"")  # an empty last body part still carries the head out
    assert sent.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD]


def test_a_response_cut_after_its_head_still_sends_the_head_before_closing():
    sent = Recorder()
    transport = HeadWithBody(sent)  # type: ignore[arg-type]
    transport.write(HEAD)
    transport.close()
    assert sent.writes == [HEAD] and sent.closed and transport.is_closing()
    assert transport.get_extra_info("peername") == "info:peername"  # the rest is the transport's
