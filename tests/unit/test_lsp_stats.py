"""Acceptance accounting and latency percentiles."""

from __future__ import annotations

from lsp_server.stats import ServerStats, percentile


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95)) == (50.0, 95.0)
    assert percentile([], 0.5) == 0.0


def test_shown_accepted_dismissed():
    stats = ServerStats()
    stats.answered("a", "s1")
    stats.answered("a", "s1")  # typed through: still the same suggestion
    stats.answered("a", "s2")  # replaced: s1 dismissed
    stats.accepted("s2")
    stats.accepted("s2")  # counted once
    stats.answered("a", "s3")
    stats.closed("a")  # s3 dismissed
    stats.accepted("s1")  # late acceptance moves s1 back from dismissed
    snapshot = stats.snapshot()
    assert (snapshot["shown"], snapshot["accepted"], snapshot["dismissed"]) == (3, 2, 1)
