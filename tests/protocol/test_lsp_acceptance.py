"""Acceptance signals: the item's command counts an acceptance; a replaced suggestion counts
as dismissed; counts and latency percentiles come back through santacoder/stats."""

from lsprotocol import types

from tests.protocol.harness import change_document, fake_model, inline, lsp_session, open_document, stats

RULES = [{"after": "a = ", "text": "first()"}, {"after": "b = ", "text": "second()"}]


async def test_shown_accepted_dismissed_and_latency():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/a.py", "a = \nb = \n")
        [first] = await inline(client, "file:///w/a.py", 0, 4)
        [second] = await inline(client, "file:///w/a.py", 1, 4)  # the first one was not taken
        # the editor inserts the second suggestion and runs the item's command
        change_document(client, "file:///w/a.py", 2, (1, 4), (1, 4), second.insert_text)
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=second.command.command, arguments=second.command.arguments)
        )
        current = await stats(client)
        assert (current["shown"], current["accepted"], current["dismissed"]) == (2, 1, 1)
        assert current["acceptanceRate"] == 0.5
        assert current["latencyMs"]["count"] == 2
        assert 0 < current["latencyMs"]["p50"] <= current["latencyMs"]["p95"]
        assert first.command.arguments[0] != second.command.arguments[0]
