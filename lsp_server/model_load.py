"""Loading the model the settings name, with ``$/progress`` when the client has it, and a
message to the user when the load fails. The load itself runs in ``EngineHost``'s thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from .server import SantaCoderServer

log = logging.getLogger(__name__)

PROGRESS_CREATE_TIMEOUT_S = 5.0


async def load_model(ls: SantaCoderServer) -> None:
    """Load the model from the current settings, with ``$/progress`` when the client has it."""
    options = ls.settings.load_options()
    token = f"santacoder-load-{uuid.uuid4().hex[:8]}"
    progress = await _create_progress(ls, token)
    if progress:
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="SantaCoder: loading model", message=options.model, percentage=0))
    log.info("loading model %r (device %s, dtype %s, quantization %s)", options.model, options.device, options.dtype, options.quantization)
    loop = asyncio.get_running_loop()

    def report(stage: str, fraction: float | None) -> None:  # runs in the loading thread
        if progress:
            percentage = None if fraction is None else max(0, min(100, int(fraction * 100)))
            value = types.WorkDoneProgressReport(message=stage, percentage=percentage)
            loop.call_soon_threadsafe(ls.work_done_progress.report, token, value)

    started = time.perf_counter()
    error = await ls.host.load(options, report)
    superseded = ls.host.options is not options
    if progress:
        outcome = "failed" if error else "replaced by a newer load" if superseded else "ready"
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=outcome))
    if error:
        ls.report_once(f"model not loaded, completions are off: {error}", types.MessageType.Error)
    elif not superseded and ls.host.engine is not None:
        info = ls.host.engine.info
        log.info("model %r ready on %s (%s) in %.1f s, %d-token context", info.name, info.device, info.dtype, time.perf_counter() - started, info.context_tokens)


async def _create_progress(ls: SantaCoderServer, token: str) -> bool:
    window = ls.client_capabilities.window
    if window is None or not window.work_done_progress:
        return False
    try:
        await asyncio.wait_for(ls.work_done_progress.create_async(token), PROGRESS_CREATE_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 - progress is a nicety; the load goes on without it
        log.info("no progress reporting: %s", error)
        return False
    return True
