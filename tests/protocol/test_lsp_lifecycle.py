"""Model loading in the background: progress, empty answers before it is ready, a failure
reported once with the server staying up, and a reload when the model settings change."""

import time

from lsprotocol import types

from lsp_server.engine_adapter import FAKE_ENGINE_ENV
from tests.protocol.harness import fake_model, inline, lsp_session, open_document, server_env, stats, wait_for_model

RULES = [{"after": "x = ", "text": "42"}]


async def test_requests_before_the_model_is_ready_get_an_empty_answer_then_progress_ends():
    async with lsp_session({"model": fake_model(rules=RULES, loadDelayMs=1500)}, wait_ready=False) as client:
        open_document(client, "file:///w/a.py", "x = \n")
        started = time.perf_counter()
        assert await inline(client, "file:///w/a.py", 0, 4) == []
        assert time.perf_counter() - started < 1.0  # answered at once, not after the load
        assert (await stats(client))["notReady"] == 1
        await wait_for_model(client, ("ready",))
        [item] = await inline(client, "file:///w/a.py", 0, 4)
        assert item.insert_text == "42"
        [reports] = client.progress_reports.values()
        kinds = [type(report) for report in reports]
        assert kinds[0] is types.WorkDoneProgressBegin and kinds[-1] is types.WorkDoneProgressEnd
        assert types.WorkDoneProgressReport in kinds
        assert any("ready" in message.message for message in client.log_messages)


async def test_a_failed_load_is_reported_once_and_a_settings_change_reloads():
    broken = fake_model(loadError="no such model: point the model setting at a directory")
    async with lsp_session({"model": broken}, wait_ready=False) as client:
        current = await wait_for_model(client)
        assert current["model"]["state"] == "failed"
        open_document(client, "file:///w/a.py", "x = \n")
        assert await inline(client, "file:///w/a.py", 0, 4) == []
        assert await inline(client, "file:///w/a.py", 0, 4) == []  # still up, still empty

        # unrelated settings do not reload; the same failure is not shown again
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": {"model": broken, "debounceMs": 1}}))
        assert (await stats(client))["model"]["state"] == "failed"
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "no such model" in errors[0].message

        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"santacoder": {"model": fake_model(rules=RULES)}}))
        await wait_for_model(client, ("ready",))
        [item] = await inline(client, "file:///w/a.py", 0, 4)
        assert item.insert_text == "42"


async def test_fake_engines_cannot_be_selected_without_the_test_switch():
    env = server_env()
    del env[FAKE_ENGINE_ENV]
    async with lsp_session({"model": fake_model(rules=RULES)}, wait_ready=False, env=env) as client:
        assert (await wait_for_model(client))["model"]["state"] == "failed"
        [error] = [m for m in client.messages if m.type == types.MessageType.Error]
        assert "reserved for the test suite" in error.message


async def test_stray_output_while_loading_cannot_corrupt_the_protocol():
    model = fake_model(rules=RULES, strayOutput="Content-Length: 5\r\n\r\nhello")
    async with lsp_session({"model": model}) as client:
        open_document(client, "file:///w/a.py", "x = \n")
        [item] = await inline(client, "file:///w/a.py", 0, 4)
        assert item.insert_text == "42"
