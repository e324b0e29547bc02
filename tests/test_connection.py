"""The connection's read-ahead socket: byte-exact pieces, pending() accounting, EOF."""
import socket

from bfxsync._engine.transport import _ReadAheadSocket


def test_read_ahead_serves_exact_pieces():
    """Small reads come from one large recv; pending() counts what is held; EOF reads empty."""
    left, right = socket.socketpair()
    try:
        data = bytes(range(256)) * 40  # 10 KiB
        left.sendall(data)
        left.shutdown(socket.SHUT_WR)
        reader = _ReadAheadSocket(right)
        got = [reader.recv(2), reader.recv(100), reader.recv(3)]
        assert b"".join(got) == data[:105]
        assert 0 < reader.pending() <= len(data) - 105
        rest = b""
        while True:
            chunk = reader.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert b"".join(got) + rest == data and reader.pending() == 0
        assert reader.fileno() == right.fileno()  # everything else is the wrapped socket's
    finally:
        left.close()
        right.close()
