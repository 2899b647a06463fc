"""Every private part of pygls that ``lsp_server`` relies on, in one place.

pygls is pinned to the minor version this list was written against (``pyproject.toml``:
``pygls>=2.1,<2.2``). Before widening the pin, run ``tests/unit/test_pygls_internals.py``
against the new version: it checks that each entry below still exists with the kind and
signature listed, and fails naming the one that changed. Each entry says who uses it and why,
so a failure tells what to rewrite.

Public pygls API (``LanguageServer``, ``feature``, ``command``, ``set_writer``,
``handle_message``, ``get_message_type``, ``fm.features``/``fm.builtin_features``) is not
listed; only what starts with an underscore or is pygls' machinery rather than its interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["attribute", "method", "builtin_handler", "function", "decorator"]


@dataclass(frozen=True)
class Internal:
    """``owner`` is a dotted path to a module or class; ``name`` a member of it.

    ``attribute``: an instance attribute of ``owner`` (a class), of type ``type_name`` (the
    ``__name__`` of its value's type on a fresh protocol). ``method``: a method of ``owner``
    whose parameters (without ``self``) are ``parameters``, overridden or called by us.
    ``builtin_handler``: a generator method of ``owner`` registered (``lsp_method``) for the LSP
    method ``lsp_method``, which our protocol overrides. ``function``/``decorator``: a
    module-level callable with ``parameters``."""

    owner: str
    name: str
    kind: Kind
    used_by: str
    parameters: tuple[str, ...] = ()
    type_name: str = ""
    lsp_method: str = ""


_JSON_RPC = "pygls.protocol.json_rpc.JsonRPCProtocol"
_LSP = "pygls.protocol.language_server.LanguageServerProtocol"

INTERNALS: tuple[Internal, ...] = (
    # -- state read or changed by protocol.py, transport.py and __main__.py --------------------
    Internal(_JSON_RPC, "_shutdown", "attribute", "protocol.receive/lsp_exit, transport.serve: requests after shutdown, exit code", type_name="bool"),
    Internal(_JSON_RPC, "_request_futures", "attribute", "protocol._handle_cancel_notification/_receive_response: cancel or fail a request", type_name="dict"),
    Internal(_JSON_RPC, "_result_types", "attribute", "protocol._receive_response: the result type of our own request", type_name="dict"),
    Internal(_JSON_RPC, "_converter", "attribute", "protocol.receive: structuring messages with the strict converter", type_name="Converter"),
    Internal(_JSON_RPC, "_server", "attribute", "__main__._serve_tcp: the session's server from its protocol", type_name="SantaCoderServer"),
    Internal(_LSP, "_workspace", "attribute", "protocol.receive: None until initialize (ServerNotInitialized, a second initialize)", type_name="NoneType"),
    # -- methods overridden or called --------------------------------------------------------
    Internal(_JSON_RPC, "_send_data", "method", "protocol._reject: an error answer with \"id\": null", parameters=("data",)),
    Internal(_JSON_RPC, "_handle_notification", "method", "protocol: unknown $/ notifications ignored quietly", parameters=("method_name", "params")),
    Internal(_JSON_RPC, "_handle_cancel_notification", "method", "protocol: a late cancel is not worth a warning", parameters=("msg_id",)),
    Internal(_JSON_RPC, "_check_handler_result", "method", "protocol: a failed notification handler is logged", parameters=("future",)),
    Internal(_JSON_RPC, "_run_generator", "method", "protocol's builtin handlers yield (handler, args, kwargs) to it", parameters=("future", "gen", "result_future")),
    # -- builtin handlers replaced (pygls kept its own document copy, see protocol.py) -----------
    Internal(_LSP, "lsp_text_document__did_open", "builtin_handler", "protocol: didOpen straight to our handler", lsp_method="textDocument/didOpen"),
    Internal(_LSP, "lsp_text_document__did_change", "builtin_handler", "protocol: didChange straight to our handler", lsp_method="textDocument/didChange"),
    Internal(_LSP, "lsp_text_document__did_close", "builtin_handler", "protocol: didClose straight to our handler", lsp_method="textDocument/didClose"),
    Internal(_LSP, "lsp_exit", "builtin_handler", "protocol: exit stops the transport instead of sys.exit", lsp_method="exit"),
    # -- module-level machinery ----------------------------------------------------------------
    Internal("pygls.protocol.language_server", "lsp_method", "decorator", "protocol: registering the overrides above", parameters=("method_name",)),
    Internal(
        "pygls.protocol.language_server", "_prepare_command_arguments", "function",
        "handlers.santacoder_accepted: its type hints are evaluated, *args takes every argument",
        parameters=("handler", "params", "converter"),
    ),  # fmt: skip
)
