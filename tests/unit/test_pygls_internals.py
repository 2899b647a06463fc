"""pygls' private parts that lsp_server relies on (lsp_server/pygls_internals.py) are still
there, with the kind and signature listed: a pygls upgrade that changes one fails here, by name."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

from lsp_server.pygls_internals import INTERNALS, Internal
from lsp_server.server import create_server


def _resolve(dotted: str):
    """A module, or a class inside one, from its dotted path."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ImportError(dotted)


def _parameters(function) -> tuple[str, ...]:
    names = tuple(inspect.signature(function).parameters)
    return names[1:] if names[:1] == ("self",) else names


@pytest.fixture(scope="module")
def protocol():
    return create_server().protocol  # a fresh SantaCoderProtocol, before initialize


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda i: f"{i.owner.rsplit('.', 1)[-1]}.{i.name}")
def test_pygls_still_has(internal: Internal, protocol):
    owner = _resolve(internal.owner)
    if internal.kind == "attribute":
        assert isinstance(owner, type) and isinstance(protocol, owner)
        assert hasattr(protocol, internal.name), f"{internal.owner} lost {internal.name}; used by {internal.used_by}"
        assert type(getattr(protocol, internal.name)).__name__ == internal.type_name
        return
    member = inspect.getattr_static(owner, internal.name)  # defined on ``owner`` or inherited
    assert callable(member), f"{internal.name} is no longer callable; used by {internal.used_by}"
    if internal.kind == "builtin_handler":
        assert inspect.isgeneratorfunction(member), f"{internal.name} no longer yields handlers; used by {internal.used_by}"
        assert getattr(member, "method_name", None) == internal.lsp_method
        assert _parameters(member) in (("params",), ("args",))
        return
    assert _parameters(member) == internal.parameters, f"{internal.name}'s parameters changed; used by {internal.used_by}"


def test_every_private_pygls_member_used_in_lsp_server_is_listed(protocol):
    """A private member of pygls' protocol that our code reads, calls or overrides (one that
    pygls' own protocol has) must be listed; our own private helpers need not be."""
    from pygls.protocol import LanguageServerProtocol

    listed = {internal.name for internal in INTERNALS}
    base = LanguageServerProtocol(protocol._server, protocol._converter)
    package = Path(__file__).resolve().parents[2] / "lsp_server"
    for name in ("protocol.py", "transport.py", "__main__.py"):
        source = (package / name).read_text(encoding="utf-8")
        used = set(re.findall(r"\b(?:self|protocol|super\(\))\.(_[a-z]\w*)", source)) | set(re.findall(r"\bdef (_[a-z]\w*)", source))
        for member in used:
            if hasattr(base, member):
                assert member in listed, f"{name} relies on pygls' {member}, which lsp_server/pygls_internals.py does not list"


def test_the_overridden_builtin_handlers_are_the_ones_our_protocol_registers(protocol):
    for internal in INTERNALS:
        if internal.kind == "builtin_handler":
            assert protocol.fm.builtin_features[internal.lsp_method].__func__ is getattr(type(protocol), internal.name)
