"""Our subclass of pygls' LSP protocol.

Document sync: pygls' built-in ``didOpen``/``didChange``/``didClose`` handlers keep a copy of
every document in ``ls.workspace`` before our handlers run. That copy is not ours to trust:
pygls 2.1 splits lines with ``str.splitlines`` (breaking at U+2028, form feed and friends) and,
while applying a change, clamps a column past the end of its line *in the params object itself*
(to one before the end), so our own store (``lsp_server.documents``) received a different range
than the client sent and drifted from the client's text. Found by the property test in
``tests/reliability/test_properties.py`` (a change ``0:0-0:2`` on ``"\\u2028a"`` arrived as ``0:0-0:0``).
The overrides below hand the untouched params straight to our handlers and keep no second copy
(which also saves re-joining a large document's lines on every keystroke).

Messages that are not what they should be: every message passes ``receive`` (called by
``lsp_server.transport``, which replaces pygls' read loop). There a body that is not JSON gets a
ParseError response, a non-object or a message without ``"jsonrpc": "2.0"`` an InvalidRequest,
a request whose params do not fit the method's type an InvalidParams error naming the field,
a request after ``shutdown`` an InvalidRequest and one before ``initialize``
ServerNotInitialized, a second ``initialize`` an InvalidRequest (the first negotiation stays); each is logged in one line. pygls 2.1 left such requests unanswered (the
client waited forever), logged a traceback instead of the problem, and showed the user a popup
(``Error in server: ...``) for what was the client's fault. JSON-RPC also allows leaving
``params`` out, which pygls could not structure for methods outside the LSP specification
(``santacoder/stats`` went unanswered). Fields are typed strictly (``strict_types``): cattrs
coerced ``"text": null`` into the text ``"None"``. Unknown ``$/`` notifications are ignored
silently, as LSP allows; ``exit`` stops the transport with the exit code LSP asks for (0 after
``shutdown``, else 1) instead of raising ``SystemExit`` inside a handler.

This class overrides and reads private members of pygls' protocol; every one is listed in
``lsp_server.pygls_internals`` (pygls is pinned to that minor version, and a test checks them).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from concurrent.futures import Future
from typing import Any

import cattrs
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage, LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

if sys.version_info < (3, 11):  # a builtin from 3.11; cattrs depends on the backport before that
    from exceptiongroup import BaseExceptionGroup

log = logging.getLogger(__name__)

LOGGED_BODY_CHARS = 200  # how much of a bad message the log shows
_INDEXED_INTO = re.compile(r"indices must be|not subscriptable")  # cattrs read a field of a non-object
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


class SantaCoderProtocol(LanguageServerProtocol):
    def __init__(self, server: Any, converter: cattrs.Converter):
        super().__init__(server, strict_types(converter))
        self.exit_code: int | None = None  # set by ``exit``; the transport stops reading then

    def _user_handler(self, method: str, params):
        handler = self.fm.features.get(method)
        if handler is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield from self._user_handler(types.TEXT_DOCUMENT_DID_CLOSE, params)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        if (handler := self.fm.features.get(types.EXIT)) is not None:
            yield handler, args, None
        self.exit_code = 0 if self._shutdown else 1
        if not self._shutdown:
            log.warning("exit without shutdown first: exit code 1")

    def _handle_cancel_notification(self, msg_id) -> None:
        """Cancel a request that is still running. A cancel that arrives after the answer went
        out is normal (clients cancel on every keystroke), so it is not worth a warning."""
        future = self._request_futures.pop(msg_id, None)
        if future is None:
            log.debug("cancel for request %r, which was answered already", msg_id)
        elif future.cancel():
            log.debug("cancelled request %r", msg_id)

    # -- messages that are not what they should be ----------------------------------------

    def receive(self, body: bytes) -> None:
        """Handle one message body. What is wrong with it is logged, and a request (or what
        cannot be told from one) is always answered: by its handler or with an error."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
            self._reject(None, types.ErrorCodes.ParseError, f"not JSON ({error})", body)
            return
        problem = envelope_problem(data)
        if problem is not None:
            msg_id = data.get("id") if isinstance(data, dict) and _is_id(data.get("id")) else None
            self._reject(msg_id, types.ErrorCodes.InvalidRequest, problem, body)
            return
        method = data.get("method")
        if method is None:
            self._receive_response(data, body)
            return
        data.setdefault("params", None)  # JSON-RPC lets a message leave its params out
        msg_id = data.get("id")
        is_request = "id" in data
        if self._shutdown and method != types.EXIT:
            if is_request:  # LSP: requests after shutdown get InvalidRequest
                self._reject(msg_id, types.ErrorCodes.InvalidRequest, f"{method} after shutdown", body)
            return
        if is_request and self._workspace is None and method != types.INITIALIZE:
            self._reject(msg_id, types.ErrorCodes.ServerNotInitialized, f"{method} before initialize", body)
            return
        if method == types.INITIALIZE and self._workspace is not None:
            # LSP: initialize is sent once. Answering it again would renegotiate the position
            # encoding mid-session, and every later column would be read in the wrong units.
            problem = f"initialize sent again; the first negotiation stays (position encoding {self._negotiated_encoding()})"
            self._reject(msg_id, types.ErrorCodes.InvalidRequest, problem, body, respond=is_request)
            return
        # Without a handler the params are not checked: pygls answers MethodNotFound (or ignores it).
        handled = method in self.fm.features or method in self.fm.builtin_features or method == types.CANCEL_REQUEST
        message_type = (handled and self.get_message_type(method)) or (JsonRPCRequestMessage if is_request else JsonRPCNotification)
        try:
            message = self._converter.structure(data, message_type)
        except Exception as error:  # noqa: BLE001 - cattrs raises several kinds; all mean bad params
            problem = f"invalid params for {method}: {describe_structure_error(error)}"
            self._reject(msg_id, types.ErrorCodes.InvalidParams, problem, body, respond=is_request)
            return
        self.handle_message(message)

    def _negotiated_encoding(self) -> str:
        encoding = self._workspace.position_encoding if self._workspace is not None else None
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def _receive_response(self, data: dict[str, Any], body: bytes) -> None:
        """The client's answer to one of our requests (progress creation, configuration)."""
        response_type = types.ResponseErrorMessage if "error" in data else self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
        try:
            message = self._converter.structure(data, response_type)
        except Exception as error:  # noqa: BLE001
            problem = f"invalid response to our request {data['id']!r}: {describe_structure_error(error)}"
            self._reject(None, types.ErrorCodes.InvalidParams, problem, body, respond=False)
            future = self._request_futures.pop(data["id"], None)
            if future is not None and not future.done():
                future.set_exception(JsonRpcInvalidParams(problem))
            return
        self.handle_message(message)

    def _reject(self, msg_id: Any, code: types.ErrorCodes, problem: str, body: bytes, *, respond: bool = True) -> None:
        """Log a bad message in one line and, for a request, answer with error ``code``.
        ``msg_id`` None answers with ``"id": null``, as JSON-RPC asks when the id is unknown."""
        excerpt = body[:LOGGED_BODY_CHARS].decode("utf-8", "replace")
        more = "..." if len(body) > LOGGED_BODY_CHARS else ""
        log.warning("bad message from the client: %s%s; the message was %r%s", problem, "" if respond else " (ignored)", excerpt, more)
        if respond:
            # a plain dict: lsprotocol's message types leave out an id of None
            error = {"code": int(code), "message": problem}
            self._send_data({"jsonrpc": self.VERSION, "id": msg_id, "error": error})

    def _handle_notification(self, method_name: str, params: Any) -> None:
        known = method_name in self.fm.features or method_name in self.fm.builtin_features
        if method_name.startswith("$/") and method_name != types.CANCEL_REQUEST and not known:
            return  # LSP: notifications starting with $/ may be ignored, so they are, quietly
        super()._handle_notification(method_name, params)

    def _check_handler_result(self, future: Future[Any]) -> None:
        """pygls only shows a notification handler's exception to the user; log it too."""
        if not future.cancelled() and (error := future.exception()) is not None:
            log.error("a notification handler failed", exc_info=error)
        super()._check_handler_result(future)


def envelope_problem(data: Any) -> str | None:
    """What keeps ``data`` from being a JSON-RPC 2.0 request, notification or response."""
    if not isinstance(data, dict):
        return f"a message must be a JSON object, not {_JSON_TYPES.get(type(data), type(data).__name__)}"
    if data.get("jsonrpc") != "2.0":
        return 'no "jsonrpc": "2.0" member'
    method = data.get("method")
    if method is not None and not isinstance(method, str):
        return f'"method" must be a string, not {_JSON_TYPES.get(type(method), "that")}'
    if "id" in data and not _is_id(data["id"]) and not (method is None and data["id"] is None):
        return '"id" must be a number or a string'
    if method is None and ("id" not in data or ("result" not in data and "error" not in data)):
        return 'neither a request, a notification nor a response (no "method", or no "id" with "result" or "error")'
    params = data.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        return f'"params" must be an object or an array, not {_JSON_TYPES.get(type(params), "that")}'
    return None


def _is_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def describe_structure_error(error: BaseException) -> str:
    """cattrs' nested errors as one short line with LSP's field names, e.g.
    ``expected an integer, got a string at params.position.line``."""
    problems: list[str] = []
    for path, leaf in _leaf_errors(error, ""):
        if isinstance(leaf, KeyError):
            text = "missing"
        elif isinstance(leaf, TypeError) and not str(leaf).startswith("expected "):
            # cattrs indexed into a string or null where an object belongs
            text, path = "expected an object", path.rpartition(".")[0] if _INDEXED_INTO.search(str(leaf)) else path
        else:
            text = str(leaf) or type(leaf).__name__
        where = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path.lstrip("."))
        line = f"{text} at {where}" if where else text
        if line not in problems:
            problems.append(line)
    return "; ".join(problems)


def _leaf_errors(error: BaseException, path: str):
    if isinstance(error, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        with_notes, others = error.group_exceptions()
        for sub, note in with_notes:  # a field's name, or an item's index
            step = f".{note.name}" if isinstance(note, cattrs.AttributeValidationNote) else f"[{note.index}]"
            yield from _leaf_errors(sub, path + step)
        for sub in others:
            yield from _leaf_errors(sub, path)
    elif isinstance(error, BaseExceptionGroup):
        for member in error.exceptions:
            yield from _leaf_errors(member, path)
    else:
        yield path, error


def strict_types(converter: cattrs.Converter) -> cattrs.Converter:
    """Make ``converter`` refuse a JSON value of the wrong type for a ``str``/``int``/``bool``/
    ``float`` field. By default cattrs calls ``str(value)``/``int(value)``: a didOpen whose text
    was ``null`` opened a document reading ``None``, and a line of ``0.5`` became line 0."""

    def exactly(name: str, *kinds: type):
        def structure(value: Any, _type: Any) -> Any:
            if type(value) not in kinds:
                raise TypeError(f"expected {name}, got {_JSON_TYPES.get(type(value), type(value).__name__)}")
            return value

        return structure

    converter.register_structure_hook(str, exactly("a string", str))
    converter.register_structure_hook(int, exactly("an integer", int))
    converter.register_structure_hook(bool, exactly("a boolean", bool))
    converter.register_structure_hook(float, exactly("a number", int, float))
    return converter
