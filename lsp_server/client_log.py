"""The log, forwarded to the client as ``window/logMessage`` (VS Code's output channel)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from .server import SantaCoderServer


class ClientLogHandler(logging.Handler):
    """Forwards log records to the client as ``window/logMessage`` once it is initialized.
    Safe from any thread: the message is sent from the event loop. ``server`` may be swapped
    (TCP: each connection is a new server)."""

    _LEVELS = ((logging.ERROR, types.MessageType.Error), (logging.WARNING, types.MessageType.Warning), (logging.INFO, types.MessageType.Info))

    def __init__(self, server: SantaCoderServer, level: int = logging.INFO):
        super().__init__(level)
        self.server = server
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        loop = self.server.loop
        if loop is None or loop.is_closed():
            return
        kind = next((kind for level, kind in self._LEVELS if record.levelno >= level), types.MessageType.Log)
        params = types.LogMessageParams(type=kind, message=self.format(record))
        try:
            loop.call_soon_threadsafe(self.server.window_log_message, params)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass
