"""The completer's plan with extra context: the reserve comes out of the windows, the whole
prompt fits the runtime's budget, and the block reaches the request."""

from __future__ import annotations

from lsp_server.completer import Completer
from lsp_server.engine_host import EngineHost
from lsp_server.settings import Settings
from lsp_server.stats import ServerStats
from model_runtime.api import LoadOptions
from tests.fakes import FakeEngine

HELPER = "".join(f"def helper_{i}(value):\n    doubled = value * 2\n    tripled = value * 3\n    return doubled + tripled\n\n" for i in range(40))
MAIN = "".join(f"result_{i} = helper_{i % 40}(1)\n" for i in range(400))


async def completer_for(engine: FakeEngine) -> Completer:
    host = EngineHost(loader=lambda options, progress: engine)
    assert await host.load(LoadOptions(model="fake")) is None
    return Completer(host, ServerStats())


async def test_the_block_and_the_windows_share_the_prompt_budget():
    engine = FakeEngine(context_tokens=512)
    completer = await completer_for(engine)
    completer.context.opened("file:///w/helper.py", "python", HELPER)
    completer.context.opened("file:///w/main.py", "python", MAIN)
    settings = Settings(debounce_ms=0, extra_context_tokens=256)
    await completer.suggest("file:///w/main.py", MAIN, len(MAIN) // 2, settings)
    on = engine.calls[-1]
    await completer.suggest("file:///w/main.py", MAIN, len(MAIN) // 2, Settings(debounce_ms=0, extra_context_tokens=0))
    off = engine.calls[-1]
    prompt_tokens = engine.info.prompt_budget(settings.budget_new_tokens()).prompt_tokens
    block_tokens = engine.count_tokens(on.extra_context)
    assert on.extra_context.startswith("# helper.py\ndef helper_") and off.extra_context == ""
    assert 0 < block_tokens <= prompt_tokens // 4  # capped at a quarter of the prompt budget
    windows_on = engine.count_tokens(on.prefix) + engine.count_tokens(on.suffix)
    windows_off = engine.count_tokens(off.prefix) + engine.count_tokens(off.suffix)
    assert block_tokens + windows_on <= prompt_tokens
    assert windows_on <= prompt_tokens - prompt_tokens // 4 < windows_off
