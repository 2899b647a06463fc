from model_runtime.vocabulary import TextStream, TokenTable


def test_bytes_of_round_trip_the_tokenizer(tiny_tokenizer):
    table = TokenTable(tiny_tokenizer)
    text = 'def f(x):\n    return "héllo, 世界 😀"\n'
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert table.text_of(ids) == text


def test_special_tokens_have_no_bytes_and_stop(tiny_tokenizer):
    table = TokenTable(tiny_tokenizer)
    for name in ("<|endoftext|>", "<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"):
        token_id = tiny_tokenizer.convert_tokens_to_ids(name)
        assert table.bytes_of[token_id] == b""
        assert token_id in table.stop_ids


def test_prefix_search_matches_brute_force(tiny_tokenizer):
    table = TokenTable(tiny_tokenizer)
    for prefix in (b"re", b"\n", b" ", b"(", b"def", b"\xc3"):
        expected = sorted(i for i, b in enumerate(table.bytes_of) if b and b.startswith(prefix))
        assert sorted(table.ids_starting_with(prefix)) == expected
        assert expected, prefix


def test_stream_holds_back_half_characters_and_skips_healed_bytes(tiny_tokenizer):
    table = TokenTable(tiny_tokenizer)
    ids = tiny_tokenizer.encode("wo 😀x", add_special_tokens=False)
    stream = TextStream(table, skip_bytes=1)
    texts = [stream.push(i) for i in ids]
    assert texts[-1] == "o 😀x"
    assert all("\ufffd" not in t for t in texts)  # a split emoji is never shown half-decoded
