"""The server advertises what editors need to ask it for completions."""

from lsprotocol import types

from tests.protocol.harness import lsp_session


async def test_inline_completion_and_friends_are_advertised():
    async with lsp_session(wait_ready=False) as client:
        result = client.initialize_result
        caps = result.capabilities
        assert caps.inline_completion_provider is not None
        assert caps.completion_provider is not None
        assert "santacoder.accepted" in caps.execute_command_provider.commands
        assert caps.position_encoding == types.PositionEncodingKind.Utf16
        sync = caps.text_document_sync
        assert sync.open_close and sync.change == types.TextDocumentSyncKind.Incremental
        assert result.server_info.name == "santacoder-lsp"


async def test_utf8_position_encoding_is_taken_when_offered():
    async with lsp_session(encodings=["utf-8", "utf-16"], wait_ready=False) as client:
        assert client.initialize_result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
