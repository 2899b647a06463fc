"""Load: a fast typist for minutes, then a burst of requests, against the real server process.

    python benchmarks/load_replay.py [--model tiny] [--seconds 120] [--keys-per-second 20] [--burst 1000] [--json out.json]
    python benchmarks/load_replay.py --huge-mb 10 100 [--huge-keystrokes 40] [--server-repo /work/base] [--json out.json]

Typing: a held-out stdlib file is opened with its first lines and the rest is typed one
character per keystroke at ``--keys-per-second``; every keystroke is a ``didChange`` followed by
an ``inlineCompletion`` request, and the previous request is cancelled if it is still open (as
VS Code does). Burst: ``--burst`` requests at once, at different cursor positions, none
cancelled; the newest one must still get a prompt answer.

Prints what the server's memory did (peak RSS: ``VmHWM``; RSS after the model loaded and at
the end), latency of the requests that were answered (not cancelled), how long the burst's
newest request took, and the server's cache and queue figures against their budgets.

Huge documents (``--huge-mb``, instead of the typing and burst phases): for each size, a fresh
server gets a ``didOpen`` of that many MB (the held-out file repeated), then
``--huge-keystrokes`` keystrokes in the middle of it, one at a time: a ``didChange`` and an
``inlineCompletion`` request, timed from sending the change to the answer. The model there is
a scripted engine that answers at once (``--huge-model``), so the figure is what the server
itself spends per keystroke (edit applied, windows taken, caches checked) plus the round trip;
with a real model, its decode would be added to every keystroke. ``--server-repo`` runs the
server from another checkout (e.g. the code before a change) for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lsprotocol import types  # noqa: E402
from pygls.exceptions import JsonRpcException  # noqa: E402

REQUEST_CANCELLED = -32800


def default_source() -> str:
    """A held-out stdlib file: the typed text is not something the tiny model trained on."""
    from training.corpus import load_heldout_documents

    documents = sorted(load_heldout_documents(), key=lambda document: -len(document.text))
    return next(document.text for document in documents if 20_000 < len(document.text) < 200_000)


def rss_kib(pid: int) -> dict[str, int]:
    """The process's current and peak resident set size (``VmRSS``, ``VmHWM``) in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (all its threads)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, int(round(fraction * len(ordered) + 0.5)) - 1)]


@dataclass
class Figures:
    model: str
    keys_per_second: float
    typing_seconds: float
    keystrokes: int = 0
    requests: int = 0
    answered: int = 0  # a result came back (items or none)
    with_items: int = 0
    cancelled_by_client: int = 0
    unanswered: int = 0  # neither a result nor a cancellation error: must stay 0
    other_errors: int = 0  # must stay 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    burst: dict[str, Any] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    alive: bool = True


def _outcome(future, timeout: float) -> str:
    try:
        result = future.result(timeout)
    except JsonRpcException as error:
        return "cancelled" if getattr(error, "code", None) == REQUEST_CANCELLED else "error"
    except TimeoutError:
        return "unanswered"
    items = [] if result is None else list(getattr(result, "items", result))
    return "items" if items else "empty"


def run_load(
    model: str = "tiny", seconds: float = 120, keys_per_second: float = 20, burst: int = 1000, source: str | None = None,
    options: dict[str, Any] | None = None, progress: bool = True,
) -> Figures:  # fmt: skip
    from tests.reliability.client import BackgroundClient

    source = source if source is not None else default_source()
    lines = source.splitlines(keepends=True)
    opened = "".join(lines[:40])
    to_type = "".join(lines[40:])
    client = BackgroundClient({"model": model, **(options or {})})
    figures = Figures(model, keys_per_second, seconds)
    samples: list[int] = []
    stop_sampling = threading.Event()
    try:
        state = client.wait_for_model()
        if state != "ready":
            raise SystemExit(f"the model did not load: {client.stats()['model']}")
        pid = client.pid
        after_load = rss_kib(pid)["VmRSS"]

        def sample() -> None:
            while not stop_sampling.wait(0.25):
                try:
                    samples.append(rss_kib(pid)["VmRSS"])
                except (OSError, KeyError):
                    return

        threading.Thread(target=sample, name="rss", daemon=True).start()
        uri = "file:///load/typed.py"
        client.notify("textDocument/didOpen", types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=opened)))  # fmt: skip
        line, character, version = opened.count("\n"), 0, 1
        sent: list[tuple[float, Any]] = []  # (send time, future)
        latencies: list[float] = []
        previous: tuple[str, Any] | None = None
        interval = 1.0 / keys_per_second
        started = time.perf_counter()
        index = 0
        while time.perf_counter() - started < seconds and index < len(to_type):
            due = started + figures.keystrokes * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            char = to_type[index]
            index += 1
            version += 1
            position = types.Position(line=line, character=character)
            client.notify("textDocument/didChange", types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=position, end=position), text=char)],
            ))  # fmt: skip
            if char == "\n":
                line, character = line + 1, 0
            else:
                character += len(char.encode("utf-16-le")) // 2
            figures.keystrokes += 1
            if previous is not None and not previous[1].done():
                client.cancel(previous[0])
            msg_id, future = client.send("textDocument/inlineCompletion", _inline(uri, line, character))
            sent_at = time.perf_counter()
            future.add_done_callback(lambda done, sent_at=sent_at: _record(done, sent_at, latencies))
            sent.append((sent_at, future))
            previous = (msg_id, future)
            if progress and figures.keystrokes % 200 == 0:
                print(f"  {figures.keystrokes} keystrokes, {time.perf_counter() - started:.0f} s", file=sys.stderr)
        figures.typing_seconds = round(time.perf_counter() - started, 1)
        for _, future in sent:
            outcome = _outcome(future, 60)
            _count(figures, outcome)
        figures.latency_ms = {
            "count": len(latencies), "p50": round(percentile(latencies, 0.5), 1), "p95": round(percentile(latencies, 0.95), 1),
            "max": round(max(latencies, default=0.0), 1), "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        }  # fmt: skip
        before_burst = client.stats()
        figures.burst = _burst(client, uri, line, character, burst)
        after = client.stats()
        figures.burst["modelCalls"] = after["modelCalls"] - before_burst["modelCalls"]
        figures.alive = client.alive()
        stop_sampling.set()
        memory = rss_kib(pid)
        figures.memory_mib = {
            "afterLoad": round(after_load / 1024, 1), "end": round(memory["VmRSS"] / 1024, 1),
            "peakSampled": round(max(samples, default=memory["VmRSS"]) / 1024, 1), "peakVmHWM": round(memory["VmHWM"] / 1024, 1),
        }  # fmt: skip
        figures.server = {"caches": after["caches"], "queues": after["queues"], "counts": {
            name: after[name] for name in ("requests", "modelCalls", "exactCacheHits", "typedThroughHits", "cancelled", "stale", "errors")}}  # fmt: skip
    finally:
        stop_sampling.set()
        client.close()
    return figures


def _inline(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    )


def _record(future, sent_at: float, latencies: list[float]) -> None:
    if not future.cancelled() and future.exception() is None:
        latencies.append((time.perf_counter() - sent_at) * 1000)


def _count(figures: Figures, outcome: str) -> None:
    figures.requests += 1
    if outcome in ("items", "empty"):
        figures.answered += 1
        figures.with_items += outcome == "items"
    elif outcome == "cancelled":
        figures.cancelled_by_client += 1
    elif outcome == "unanswered":
        figures.unanswered += 1
    else:
        figures.other_errors += 1


def _burst(client, uri: str, line: int, character: int, count: int) -> dict[str, Any]:
    """``count`` requests at once over the last lines of the document; the newest is at the
    cursor (``line``, ``character``), and its answer is compared with a lone request's there."""
    futures = []
    started = time.perf_counter()
    for k in range(count - 1):
        futures.append(client.send("textDocument/inlineCompletion", _inline(uri, max(0, line - 1 - k % 50), (k // 50) % 3 * 4))[1])
    futures.append(client.send("textDocument/inlineCompletion", _inline(uri, line, character))[1])
    sent_s = time.perf_counter() - started
    newest = futures[-1]
    newest_outcome = _outcome(newest, 120)
    newest_ms = (time.perf_counter() - started - sent_s) * 1000
    outcomes = [_outcome(future, 120) for future in futures]
    alone = client.request("textDocument/inlineCompletion", _inline(uri, line, character), 60)
    return {
        "requests": count, "sendSeconds": round(sent_s, 2), "newestOutcome": newest_outcome,
        "newestAnsweredMsAfterLastSend": round(newest_ms, 1), "allAnsweredSeconds": round(time.perf_counter() - started, 2),
        "outcomes": {name: outcomes.count(name) for name in sorted(set(outcomes))},
        "newestText": _texts(newest.result()), "aloneText": _texts(alone),
    }  # fmt: skip


def _texts(result) -> list[str]:
    return [item.insert_text for item in ([] if result is None else getattr(result, "items", result))]


def format_report(figures: Figures) -> str:
    f = figures
    caches, queues = f.server.get("caches", {}), f.server.get("queues", {})
    kv = f"{caches.get('kvBytes', 0) / 2**20:.1f} / {caches.get('kvBudgetBytes', 0) / 2**20:.0f} MiB in {caches.get('kvSlots', 0)} slots"
    return "\n".join([
        f"model {f.model}: typed {f.keystrokes} keystrokes in {f.typing_seconds} s ({f.keys_per_second}/s), server alive: {f.alive}",
        f"requests {f.requests}: answered {f.answered} ({f.with_items} with a suggestion), cancelled by the client {f.cancelled_by_client},"
        f" unanswered {f.unanswered}, other errors {f.other_errors}",
        f"latency of answered requests: p50 {f.latency_ms.get('p50')} ms, p95 {f.latency_ms.get('p95')} ms, max {f.latency_ms.get('max')} ms",
        f"burst of {f.burst.get('requests')}: sent in {f.burst.get('sendSeconds')} s; newest answered {f.burst.get('newestAnsweredMsAfterLastSend')} ms"
        f" after the last send ({f.burst.get('newestOutcome')}); all answered in {f.burst.get('allAnsweredSeconds')} s;"
        f" model calls {f.burst.get('modelCalls')}; outcomes {f.burst.get('outcomes')}",
        f"server memory: after load {f.memory_mib.get('afterLoad')} MiB, end {f.memory_mib.get('end')} MiB,"
        f" peak {f.memory_mib.get('peakVmHWM')} MiB (VmHWM)",
        f"caches: KV {kv}; exact {caches.get('exactEntries')} / {caches.get('exactCapacity')} entries;"
        f" shown {caches.get('shownDocuments')} / {caches.get('shownCapacity')} documents",
        f"queues: in flight now {queues.get('inFlight')}, peak {queues.get('peakInFlight')}, decode jobs now {queues.get('decodeJobs')}",
    ])  # fmt: skip


# -- huge documents --------------------------------------------------------------------------

INSTANT_MODEL = 'fake:{"rules": [{"after": "= ", "text": "1"}]}'


def server_from(repo: Path | None) -> tuple[list[str] | None, dict[str, str] | None]:
    """(command, env) that run the server from checkout ``repo`` (``None``: this one). ``-P``
    keeps the current directory off ``sys.path``, so ``PYTHONPATH`` decides which code runs."""
    if repo is None:
        return None, None
    from tests.protocol.harness import server_env

    env = server_env()
    env["PYTHONPATH"] = str(repo)
    env["SANTACODER_LSP_FAKE_ENGINE"] = str(repo / "tests" / "fakes.py")
    return [sys.executable, "-P", "-m", "lsp_server", "--log-level", "WARNING"], env


def run_huge(size_mb: float, keystrokes: int = 40, model: str = INSTANT_MODEL, repo: Path | None = None, source: str | None = None) -> dict[str, Any]:
    """One fresh server, one document of ``size_mb`` MB, ``keystrokes`` timed keystrokes in its middle."""
    from tests.reliability.client import BackgroundClient

    source = source if source is not None else default_source()
    size_chars = int(size_mb * 1_000_000)
    text = (source * (size_chars // len(source) + 1))[:size_chars]
    text = text[: text.rfind("\n") + 1]
    line = text.count("\n", 0, len(text) // 2)  # a line start in the middle
    command, env = server_from(repo)
    client = BackgroundClient({"model": model, "debounceMs": 0}, command=command, env=env)
    try:
        if client.wait_for_model() != "ready":
            raise SystemExit(f"the model did not load: {client.stats()['model']}")
        pid = client.pid
        uri = "file:///load/huge.py"
        started = time.perf_counter()
        client.notify("textDocument/didOpen", types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))  # fmt: skip
        client.stats()  # handled after the didOpen: the round trip includes it
        open_s = time.perf_counter() - started
        del text
        typed = "y = 1\n"
        character, times_ms, floor_ms, answered = 0, [], [], 0
        cpu_before = cpu_seconds(pid)
        for k in range(keystrokes):
            char = typed[k % len(typed)]
            position = types.Position(line=line, character=character)
            sent = time.perf_counter()
            client.notify("textDocument/didChange", types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=k + 2),
                content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=position, end=position), text=char)],
            ))  # fmt: skip
            line, character = (line + 1, 0) if char == "\n" else (line, character + 1)
            result = client.request("textDocument/inlineCompletion", _inline(uri, line, character), 600)
            times_ms.append((time.perf_counter() - sent) * 1000)
            answered += bool(_texts(result))
            sent = time.perf_counter()
            client.request("santacoder/stats", None)  # the round trip's floor: a request that does not touch the document
            floor_ms.append((time.perf_counter() - sent) * 1000)
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / keystrokes  # includes the floor requests
        memory = rss_kib(pid)
        return {
            "sizeMB": size_mb, "openSeconds": round(open_s, 2), "keystrokes": keystrokes, "withSuggestion": answered,
            "keystrokeMs": {"p50": round(percentile(times_ms, 0.5), 2), "p95": round(percentile(times_ms, 0.95), 2), "max": round(max(times_ms), 2)},
            "floorMs": {"p50": round(percentile(floor_ms, 0.5), 2), "p95": round(percentile(floor_ms, 0.95), 2)},
            "serverCpuMsPerKeystroke": round(cpu_ms, 1),
            "peakVmHWM_MiB": round(memory["VmHWM"] / 1024, 1), "endRSS_MiB": round(memory["VmRSS"] / 1024, 1), "alive": client.alive(),
        }  # fmt: skip
    finally:
        client.close()


def format_huge(rows: list[dict[str, Any]], label: str) -> str:
    lines = [f"huge documents ({label}): keystroke = didChange + inlineCompletion, instant model"]
    for row in rows:
        lines.append(
            f"  {row['sizeMB']:g} MB: didOpen {row['openSeconds']} s; {row['keystrokes']} keystrokes: p50 {row['keystrokeMs']['p50']} ms,"
            f" p95 {row['keystrokeMs']['p95']} ms, max {row['keystrokeMs']['max']} ms (round-trip floor p50 {row['floorMs']['p50']} ms);"
            f" server CPU {row['serverCpuMsPerKeystroke']} ms per keystroke; {row['withSuggestion']} with a suggestion;"
            f" server peak {row['peakVmHWM_MiB']} MiB (VmHWM); alive {row['alive']}"
        )  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--keys-per-second", type=float, default=20)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--huge-mb", type=float, nargs="+", help="run the huge-document phase for these sizes instead")
    parser.add_argument("--huge-keystrokes", type=int, default=40)
    parser.add_argument("--huge-model", default=INSTANT_MODEL)
    parser.add_argument("--server-repo", type=Path, help="run the server from this checkout (huge-document phase)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.huge_mb:
        rows = [run_huge(size, args.huge_keystrokes, args.huge_model, args.server_repo) for size in args.huge_mb]
        print(format_huge(rows, str(args.server_repo or REPO)))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return 0 if all(row["alive"] for row in rows) else 1
    figures = run_load(args.model, args.seconds, args.keys_per_second, args.burst)
    print(format_report(figures))
    if args.json:
        args.json.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0 if figures.alive and not figures.unanswered and not figures.other_errors else 1


if __name__ == "__main__":
    sys.exit(main())
