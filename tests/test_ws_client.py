"""The tests' WebSocket client keeps a message that arrives in the same read as the handshake's answer.

simple_websocket's own client loses it when the server then closes at once (an error and 1008 right
after the handshake): it reports a close without status (1005). A server here sends all three in one
write, as a fast server on a slow client's machine does."""

from __future__ import annotations

import socket
import threading

import pytest
import simple_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from devtools.clients import connect_ws


def answer_all_at_once(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    ws = WSConnection(ConnectionType.SERVER)
    while not any(isinstance(e, Request) for e in ws.events()):
        ws.receive_data(conn.recv(4096))
    conn.sendall(
        ws.send(AcceptConnection())
        + ws.send(TextMessage(data='{"event": "error"}'))
        + ws.send(CloseConnection(code=1008, reason="bad request"))
    )
    conn.close()


def test_a_message_sent_with_the_handshake_answer_is_received_then_the_close() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server = threading.Thread(target=answer_all_at_once, args=(listener,))
        server.start()
        ws = connect_ws(f"ws://127.0.0.1:{listener.getsockname()[1]}/x")
        assert ws.receive(timeout=10) == '{"event": "error"}'
        server.join(10)
    with pytest.raises(simple_websocket.ConnectionClosed):
        ws.receive(timeout=10)
    assert ws.close_reason == 1008
