"""Bad settings are reported once (window/showMessage) and replaced by defaults."""

import asyncio

from lsprotocol import types

from tests.protocol.harness import fake_model, inline, lsp_session, open_document, stats

BAD = {"maxNewTokens": "lots", "device": "tpu", "prefixRatio": 3, "debounceMs": -5}


async def test_bad_settings_are_reported_once_and_replaced_by_defaults():
    model = fake_model(rules=[{"after": "x = ", "text": "1"}])
    async with lsp_session({"model": model, **BAD}) as client:
        current = await stats(client)
        assert current["settings"]["maxNewTokens"] == 64
        assert current["settings"]["device"] == "auto"
        assert current["settings"]["prefixRatio"] == 0.75
        assert current["settings"]["debounceMs"] == 25
        assert current["model"]["state"] == "ready"  # the server works with the defaults
        open_document(client, "file:///w/a.py", "x = \n")
        assert [item.insert_text for item in await inline(client, "file:///w/a.py", 0, 4)] == ["1"]

        # the client sends the same bad values again: nothing new is shown
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": {"model": model, **BAD}}))
        await stats(client)  # a round trip, so the notification has been handled
        await asyncio.sleep(0.05)
        warnings = [m.message for m in client.messages if m.type == types.MessageType.Warning]
        assert len(warnings) == 4
        assert any("'maxNewTokens' must be a whole number" in w and "using 64" in w for w in warnings)
        assert any("'device'" in w and "'tpu'" in w for w in warnings)

        # a good value later is taken
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": {"maxNewTokens": 16}}))
        assert (await stats(client))["settings"]["maxNewTokens"] == 16
