"""moto_server that handles one request at a time.

moto's backends are not thread-safe: under its threaded server, two concurrent
DynamoDB TransactWriteItems can both pass their conditions (lost updates on the
capacity counters), and two concurrent SQS ReceiveMessage calls can hand out the
same message. Real DynamoDB transactions and SQS receives are atomic, so the
tests run moto with every request under one lock: the client side stays fully
concurrent, the emulator behaves atomically.

Usage: python3 moto_serial.py -H 127.0.0.1 -p PORT   (same flags as moto_server)
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

_LOCK = threading.Lock()
_CALL = DomainDispatcherApplication.__call__


def _serial_call(self, environ, start_response):
    with _LOCK:
        # Produce the whole body inside the lock: the backend's work happens here.
        return list(_CALL(self, environ, start_response))


DomainDispatcherApplication.__call__ = _serial_call

if __name__ == "__main__":
    main(sys.argv[1:])
