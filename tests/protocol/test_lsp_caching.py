"""Typed-through reuse and the exact cache answer without calling the model."""

from tests.protocol.harness import change_document, fake_model, inline, lsp_session, open_document, stats

RULES = [{"after": "items = ", "text": "sorted(values, key=len)"}]


async def test_typing_the_suggestion_answers_from_the_remainder_without_a_model_call():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/a.py", "items = \n")
        [first] = await inline(client, "file:///w/a.py", 0, 8)
        assert first.insert_text == "sorted(values, key=len)"
        for version, (character, typed) in enumerate([(8, "s"), (9, "o"), (10, "r")], start=2):
            change_document(client, "file:///w/a.py", version, (0, character), (0, character), typed)
        [second] = await inline(client, "file:///w/a.py", 0, 11)
        assert second.insert_text == "ted(values, key=len)"
        assert second.range.start.character == 11
        assert second.command.arguments[0] == first.command.arguments[0]  # the same suggestion (id), for a newer version
        current = await stats(client)
        assert (current["modelCalls"], current["typedThroughHits"], current["shown"]) == (1, 1, 1)

        # going back (undo) is an exact-cache hit: still one model call
        change_document(client, "file:///w/a.py", 5, (0, 8), (0, 11), "")
        [again] = await inline(client, "file:///w/a.py", 0, 8)
        assert again.insert_text == "sorted(values, key=len)"
        current = await stats(client)
        assert (current["modelCalls"], current["exactCacheHits"]) == (1, 1)

        # typing something the suggestion did not predict asks the model again
        change_document(client, "file:///w/a.py", 6, (0, 8), (0, 8), "[")
        await inline(client, "file:///w/a.py", 0, 9)
        assert (await stats(client))["modelCalls"] == 2
