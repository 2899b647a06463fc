"""Requests outside LSP that let a client (the extension's status item, tests) look inside:
``santacoder/stats`` (counters, latencies, the model, settings, queues and cache sizes) and
``santacoder/documentState`` (what the server holds for one document).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import SantaCoderServer

STATS_REQUEST = "santacoder/stats"
DOCUMENT_STATE_REQUEST = "santacoder/documentState"


def santacoder_stats(ls: SantaCoderServer, params: Any) -> dict[str, Any]:
    out = ls.stats.snapshot()
    out["model"] = ls.host.describe()
    out["settings"] = ls.settings.to_json()
    out["queues"] = {"inFlight": ls.in_flight, "peakInFlight": ls.peak_in_flight, "decodeJobs": len(ls.completer.lanes)}
    out["caches"] = {**ls.completer.cache.usage(), **_kv_usage(ls.host.engine), "openDocuments": len(ls.documents)}
    out["caches"].update(ls.completer.context.usage())
    return out


def _kv_usage(engine: Any) -> dict[str, int]:
    store = getattr(engine, "kv_store", None)  # the real engine's KV slots; test engines have none
    if store is None:
        return {}
    return {"kvSlots": len(store), "kvBytes": store.nbytes, "kvBudgetBytes": store.budget_bytes}


def santacoder_document_state(ls: SantaCoderServer, params: Any) -> dict[str, Any] | None:
    """What the server holds for a document: version, length and SHA-256 of its UTF-8 text,
    so a client (or a test) can check that both sides agree without sending the text back."""
    uri = params.get("uri") if isinstance(params, dict) else getattr(params, "uri", None)
    document = ls.documents.get(uri) if isinstance(uri, str) else None
    if document is None:
        return None
    digest = hashlib.sha256(document.text.encode("utf-8", "surrogatepass")).hexdigest()
    return {"uri": uri, "version": document.version, "length": len(document), "sha256": digest}
