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
        assert len(warnings) == 1, warnings  # one message for the whole payload
        assert warnings[0].startswith("SantaCoder: 4 settings problems: ")
        assert "'maxNewTokens' must be a whole number" in warnings[0] and "using 64" in warnings[0]
        assert "'device'" in warnings[0] and "'tpu'" in warnings[0]

        # a good value later is taken
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": {"maxNewTokens": 16}}))
        assert (await stats(client))["settings"]["maxNewTokens"] == 16


ELEVEN_UNKNOWN = {f"mystery{k}": k for k in range(11)}


async def test_eleven_unknown_keys_give_one_message_that_names_them_all():
    model = fake_model(rules=[{"after": "x = ", "text": "1"}])
    async with lsp_session({"model": model, **ELEVEN_UNKNOWN}) as client:
        assert (await stats(client))["model"]["state"] == "ready"
        await asyncio.sleep(0.05)
        warnings = [m.message for m in client.messages if m.type == types.MessageType.Warning]
        assert len(warnings) == 1, warnings
        assert all(repr(key) in warnings[0] for key in ELEVEN_UNKNOWN)
        assert "known settings are model, device" in warnings[0]


async def test_a_santacoder_value_that_is_not_an_object_says_what_shape_is_expected():
    model = fake_model(rules=[{"after": "x = ", "text": "1"}])
    async with lsp_session({"model": model, "maxNewTokens": 16}) as client:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": "tiny"}))
        current = await stats(client)
        await asyncio.sleep(0.05)
        assert current["settings"]["model"] == model and current["settings"]["maxNewTokens"] == 16  # kept
        warnings = [m.message for m in client.messages if m.type == types.MessageType.Warning]
        assert len(warnings) == 1, warnings
        assert '"santacoder" settings must be an object such as {"model": "tiny"' in warnings[0]
        assert "got a string 'tiny'" in warnings[0]
