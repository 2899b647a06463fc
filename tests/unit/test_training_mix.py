"""The training mix of the second generation: rest-of-line middles, related-file context, weights."""

from __future__ import annotations

import random

import pytest

from tests.model_factory import build_tokenizer
from training.corpus import Document
from training.rows import RowStream, index_documents, related_documents
from training.samples import SampleMix, SpecialIds, build_sample, format_context_chunk, split_rest_of_line

SOURCE = "def greet(name):\n    greeting = 'hello'\n\n    return f'{greeting} {name}'\nx = 1\n"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def ids(tokenizer):
    return SpecialIds.from_tokenizer(tokenizer)


def test_rest_of_line_middles_start_inside_a_line_and_end_at_its_end():
    cuts = set()
    for seed in range(300):
        prefix, middle, suffix = split_rest_of_line(SOURCE, random.Random(seed))
        assert prefix + middle + suffix == SOURCE
        assert middle and "\n" not in middle
        assert suffix == "" or suffix.startswith("\n")
        typed = prefix.rsplit("\n", 1)[-1]
        assert typed.strip(), "the cursor is after at least one typed character of the line"
        cuts.add((prefix.count("\n"), len(typed)))
    lines_cut = {line for line, _ in cuts}
    assert lines_cut == {0, 1, 3, 4}  # every non-blank line with 2+ characters, never the blank one
    assert len(cuts) > 20  # points spread over the lines, not one per line


def test_rest_of_line_falls_back_to_a_whole_line_without_a_long_enough_line():
    assert split_rest_of_line("x\n\ny\n", random.Random(0))[1] in ("x", "y")


def test_line_aligned_middles_split_between_whole_lines_and_rest_of_line(tokenizer, ids):
    whole = rest = 0
    for seed in range(200):
        sample = build_sample(tokenizer, ids, SOURCE, "psm", random.Random(seed), False, line_rate=1.0,
                              rest_of_line_rate=0.5)
        prefix = tokenizer.decode(sample[1 : sample.index(ids.fim_suffix)])
        middle = tokenizer.decode(sample[sample.index(ids.fim_middle) + 1 : -1])
        assert middle
        if prefix == "" or prefix.endswith("\n"):
            whole += 1
        else:
            rest += 1
            assert "\n" not in middle
            assert SOURCE.startswith(prefix + middle) and SOURCE[len(prefix + middle) :][:1] in ("\n", "")
    assert whole > 60 and rest > 60


def test_context_goes_before_the_sentinels_as_the_runtime_lays_it_out(tokenizer, ids):
    context = tokenizer.encode(format_context_chunk("pkg/other.py", "def helper():\n    return 2"))
    for order in ("psm", "spm"):
        sample = build_sample(tokenizer, ids, SOURCE, order, random.Random(1), False, context=context)
        assert sample[: len(context)] == context and sample[len(context)] == ids.fim_prefix
        middle_at = sample.index(ids.fim_middle)
        prompt = sample[: middle_at + 1] if order == "psm" else None
        if order == "psm":
            suffix_at = sample.index(ids.fim_suffix)
            assert prompt == ids.fim.layout(sample[len(context) + 1 : suffix_at], sample[suffix_at + 1 : middle_at],
                                            "psm", context_ids=context)
    assert format_context_chunk("a/b.py", "x = 1") == "# a/b.py\nx = 1\n"
    assert format_context_chunk("a/b.py", "x = 1\n") == "# a/b.py\nx = 1\n"
    plain = build_sample(tokenizer, ids, SOURCE, "plain", random.Random(1), True, context=context)
    assert plain[: len(context)] != context


def _documents() -> list[Document]:
    body = "".join(f"value_{i} = compute({i})\n" for i in range(80))
    return [
        Document("pkg/a.py", "# file a\n" + body, "demo"),
        Document("pkg/b.py", "# file b\n" + body, "demo"),
        Document("pkg/sub/c.py", "# file c\n" + body, "demo"),  # alone in its folder: relatives from pkg/
        Document("lonely.py", "# lonely\n" + body, "other"),  # alone in its source: no context
    ]


def test_related_documents_are_the_folder_else_the_package_and_never_a_copy(tokenizer):
    indexed = index_documents(tokenizer, _documents())
    indexed += [indexed[0]]  # an up-weighted copy of pkg/a.py
    related = related_documents(indexed)
    names = lambda k: sorted(indexed[i].path for i in related[k][0] if i != related[k][0][related[k][1]])  # noqa: E731
    assert names(0) == ["pkg/b.py"] and names(4) == ["pkg/b.py"]
    assert names(2) == ["pkg/a.py", "pkg/b.py"]
    assert names(3) == []


def test_rows_with_context_carry_chunks_of_related_files_only(tokenizer, ids):
    indexed = index_documents(tokenizer, _documents())
    mix = SampleMix(0.0, 0.5, 0.5, context_rate=1.0)
    stream = RowStream(tokenizer, indexed, row_tokens=256, seed=2, mix=mix, open_documents=4)
    with_context = 0
    for _ in range(40):
        row, _ = stream.next_row()
        assert len(row) == 256
        starts = [i for i, token in enumerate(row) if token == ids.fim_prefix]
        for start in starts:
            before = row[:start]
            previous_end = max((i for i, token in enumerate(before) if token == ids.end_of_text), default=-1)
            context = tokenizer.decode(before[previous_end + 1 :])
            if not context:
                continue
            with_context += 1
            headers = [line for line in context.split("\n") if line.startswith("# pkg/") or line.startswith("# lonely")]
            assert context.startswith("# ") and context.endswith("\n") and headers
            assert all(header[2:] in ("pkg/a.py", "pkg/b.py") for header in headers), headers
    assert with_context > 10
