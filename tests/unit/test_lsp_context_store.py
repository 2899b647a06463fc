"""The context store: chunking, dedup, limits, eviction, language skip, choice and its stability."""

from __future__ import annotations

from lsp_server.context_chunks import MAX_CHUNK_LINES, display_path, split_chunks
from lsp_server.context_store import ContextStore


def count(text: str) -> int:
    return len(text.split())  # a stand-in tokenizer: one token a word


def module(name: str, functions: int, body_lines: int = 6) -> str:
    """A Python module of ``functions`` top-level functions, each with its own identifiers."""
    out = [f'"""Module {name}."""', "import os", ""]
    for index in range(functions):
        out.append(f"def {name}_function_{index}({name}_argument_{index}):")
        out += [f"    local_{name}_{index}_{line} = {name}_argument_{index} + {line}" for line in range(body_lines)]
        out += [f"    return local_{name}_{index}_0", ""]
    return "\n".join(out) + "\n"


def store_with(documents: dict[str, tuple[str, str]], **limits) -> ContextStore:
    texts = {uri: text for uri, (_, text) in documents.items()}
    store = ContextStore(texts.get, roots=("/w",), **limits)
    for uri, (language, text) in documents.items():
        store.opened(uri, language, text)
    return store


def choose(store: ContextStore, uri: str, window: str, *, start: int = 0, line: int = 0, budget: int = 400):
    return store.choose(uri, window, start, line, budget, count)


def test_chunks_are_line_aligned_cover_the_text_and_start_on_top_level_lines():
    text = module("alpha", 6)
    chunks = split_chunks(text)
    assert "".join(chunk for _, chunk in chunks) == text
    for first_line, chunk in chunks:
        assert chunk.endswith("\n")
        assert text.splitlines()[first_line] == chunk.splitlines()[0]
        assert 1 <= len(chunk.splitlines()) <= MAX_CHUNK_LINES
    assert all(chunk.startswith("def ") for _, chunk in chunks[1:])


def test_an_edit_inside_one_chunk_leaves_the_other_chunks_unchanged():
    text = module("alpha", 6)
    edited = text.replace("local_alpha_3_2 = alpha_argument_3 + 2", "local_alpha_3_2 = alpha_argument_3 + 2000\n    extra = 1")
    before, after = [c for _, c in split_chunks(text)], [c for _, c in split_chunks(edited)]
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after)) == 1


def test_a_chunk_of_another_open_document_reaches_the_block_with_its_path_header():
    store = store_with({"file:///w/pkg/alpha.py": ("python", module("alpha", 3)), "file:///w/pkg/beta.py": ("python", module("beta", 3))})
    block = choose(store, "file:///w/pkg/beta.py", "value = alpha_function_1(3)\n")
    assert block.text.startswith("# pkg/alpha.py\n")
    assert "def alpha_function_1(alpha_argument_1):\n" in block.text
    assert "beta_function" not in block.text  # never the requesting document's own chunks
    assert block.tokens <= 400


def test_nothing_relevant_gives_an_empty_block():
    store = store_with({"file:///w/alpha.py": ("python", module("alpha", 3)), "file:///w/beta.py": ("python", module("beta", 3))})
    assert choose(store, "file:///w/beta.py", "unrelated_name = 1\n").text == ""


def test_other_languages_are_skipped_and_languages_without_comments_get_nothing():
    js = "\n".join(f"function alpha_function_{i}(x) {{\n  return x + {i};\n}}\nconst alpha_value_{i} = {i};" for i in range(8)) + "\n"
    store = store_with({
        "file:///w/alpha.js": ("javascript", js),
        "file:///w/alpha.ts": ("typescript", js.replace("x + ", "x * ")),
        "file:///w/beta.py": ("python", module("beta", 2)),
        "file:///w/notes.md": ("markdown", "alpha_function_1 is documented here\n" * 20),
    })  # fmt: skip
    assert choose(store, "file:///w/beta.py", "alpha_function_1(2)\n").text == ""
    assert choose(store, "file:///w/notes.md", "alpha_function_1(2)\n").text == ""
    assert not store.has_candidates("file:///w/notes.md")
    typescript = choose(store, "file:///w/alpha.ts", "alpha_function_1(2)\n")  # same family: JavaScript feeds TypeScript
    assert typescript.text.startswith("// alpha.js\n")


def test_a_duplicate_document_is_held_once():
    text = module("alpha", 4)
    store = store_with({"file:///w/alpha.py": ("python", text), "file:///w/copy_of_alpha.py": ("python", text)})
    single = store_with({"file:///w/alpha.py": ("python", text)})
    assert len(store.chunks()) == len(single.chunks())
    block = choose(store, "file:///w/beta.py", "alpha_function_2()\n")  # beta is not held: no language known
    assert block.text == ""
    store.opened("file:///w/beta.py", "python", module("beta", 1))
    block = choose(store, "file:///w/beta.py", "alpha_function_2()\n")
    assert block.text.count("def alpha_function_2(") == 1


def test_a_chunk_the_window_already_shows_is_dropped():
    alpha = module("alpha", 3)
    store = store_with({"file:///w/alpha.py": ("python", alpha), "file:///w/beta.py": ("python", module("beta", 1))})
    shown = alpha.split("def alpha_function_1")[1].split("def alpha_function_2")[0]
    window = "def alpha_function_1" + shown + "x = alpha_function_1(2)\n"
    block = choose(store, "file:///w/beta.py", window)
    assert "local_alpha_1_3" not in block.text


def test_limits_in_chunks_bytes_and_chunks_per_document_hold():
    documents = {f"file:///w/m{i}.py": ("python", module(f"m{i}", 20)) for i in range(6)}
    store = store_with(documents, max_chunks=30, max_bytes=1 << 30, max_chunks_per_document=8)
    assert len(store.chunks()) <= 30
    assert all(sum(c.uri == uri for c in store.chunks()) <= 8 for uri in documents)
    by_bytes = store_with(documents, max_chunks=10_000, max_bytes=6000)
    assert 0 < by_bytes.usage()["contextBytes"] <= 6000
    assert by_bytes.usage()["contextBytes"] == sum(chunk.nbytes for chunk in by_bytes.chunks())


def test_eviction_drops_the_least_recently_used_chunks_first():
    store = store_with({"file:///w/old.py": ("python", module("old", 4))}, max_chunks=8)
    store.closed("file:///w/old.py", None)
    assert store.holds("file:///w/old.py")  # a document closed recently still feeds the store
    store.opened("file:///w/new.py", "python", module("new", 4))
    store.opened("file:///w/newer.py", "python", module("newer", 4))
    uris = {chunk.uri for chunk in store.chunks()}
    assert "file:///w/old.py" not in uris and "file:///w/newer.py" in uris
    assert not store.holds("file:///w/old.py")  # closed and no chunk left: forgotten


def test_the_block_stays_byte_identical_while_the_user_types():
    alpha, beta = module("alpha", 4), module("beta", 4)
    store = store_with({"file:///w/alpha.py": ("python", alpha), "file:///w/beta.py": ("python", beta)})
    window = beta + "value = alpha_function_1("
    first = choose(store, "file:///w/beta.py", window, line=40)
    assert "def alpha_function_1(" in first.text and "def alpha_function_3(" not in first.text
    for typed in "local_beta_1_2, alpha_func, new_local_name)\n    alpha_function_":  # local or partial names
        window += typed
        store.changed("file:///w/beta.py", 40)
        assert choose(store, "file:///w/beta.py", window, line=40).text == first.text
    # the window moves: a re-ranking that finds the same set keeps the same bytes
    assert choose(store, "file:///w/beta.py", window, start=100, line=41).text == first.text
    # a completed name that another file defines re-ranks: the block changes once, then holds
    blocks = []
    for typed in "3(1) + 2\n":
        window += typed
        blocks.append(choose(store, "file:///w/beta.py", window, start=100, line=41).text)
    assert blocks[0] != first.text and "def alpha_function_3(" in blocks[0]
    assert all(block == blocks[0] for block in blocks)


def test_the_choice_changes_when_another_document_brings_something_clearly_better():
    store = store_with({"file:///w/alpha.py": ("python", module("alpha", 2)), "file:///w/beta.py": ("python", module("beta", 1))})
    window = "alpha_function_0(1)\ngamma_function_0(1) + gamma_function_1(2) + local_gamma_1_3 + local_gamma_0_4\n"
    first = choose(store, "file:///w/beta.py", window, budget=60)
    assert "alpha_function_0" in first.text
    store.opened("file:///w/gamma.py", "python", module("gamma", 2))
    second = choose(store, "file:///w/beta.py", window, budget=60)
    assert "def gamma_function_" in second.text and "alpha_function_0" not in second.text


def test_edits_of_another_document_are_rechunked_when_a_request_comes():
    texts = {"file:///w/alpha.py": module("alpha", 2), "file:///w/beta.py": module("beta", 1)}
    store = ContextStore(texts.get)
    for uri, text in texts.items():
        store.opened(uri, "python", text)
    texts["file:///w/alpha.py"] += "def fresh_helper_name(x):\n    first = x + 1\n    second = first * 2\n    return second\n"
    store.changed("file:///w/alpha.py", 20)
    assert "fresh_helper_name" in choose(store, "file:///w/beta.py", "fresh_helper_name(1)\n").text


def test_display_path_is_workspace_relative():
    assert display_path("file:///w/pkg/a%20b.py", ("/w",)) == "pkg/a b.py"
    assert display_path("file:///elsewhere/x.py", ("/w",)) == "x.py"
    assert display_path("untitled:Untitled-1", ()) == "untitled:Untitled-1"


def test_a_slightly_better_set_does_not_replace_the_chosen_one_but_a_clearly_better_one_does():
    store = store_with({"file:///w/alpha.py": ("python", module("alpha", 3)), "file:///w/beta.py": ("python", module("beta", 1))})
    held = " ".join(["alpha_function_0"] + [f"local_alpha_0_{i}" for i in range(3)])  # 4 names of function 0
    first = choose(store, "file:///w/beta.py", held, budget=40)  # room for one function's chunk
    assert "def alpha_function_0(" in first.text and "def alpha_function_1(" not in first.text
    slightly = held + " " + " ".join(f"local_alpha_1_{i}" for i in range(5))  # 5 names of function 1: < 1.3 x 4
    assert choose(store, "file:///w/beta.py", slightly, start=500, budget=40).text == first.text
    clearly = held + " " + " ".join(f"local_alpha_1_{i}" for i in range(6)) + " alpha_function_1 alpha_argument_1"  # 8 names
    assert "def alpha_function_1(" in choose(store, "file:///w/beta.py", clearly, start=1000, budget=40).text


def test_a_chunk_too_long_for_the_budget_gives_its_head_lines():
    store = store_with({"file:///w/alpha.py": ("python", module("alpha", 2, body_lines=12)), "file:///w/beta.py": ("python", module("beta", 1))})
    block = choose(store, "file:///w/beta.py", "alpha_function_1(2)\n", budget=25)
    assert block.text.startswith("# alpha.py\ndef alpha_function_1(alpha_argument_1):\n    local_alpha_1_0 = ")
    assert "return local_alpha_1_0" not in block.text  # the tail did not fit
    assert block.tokens == count(block.text) <= 25
    assert choose(store, "file:///w/beta.py", "alpha_function_1(2)\n", budget=5).text == ""  # not even 3 lines fit


def test_the_chunk_that_defines_a_name_ranks_above_chunks_that_only_use_it():
    user = "".join(f"def caller_{i}(x):\n    first = parse_header(x)\n    second = first + {i}\n    third = second * 2\n    return third\n\n" for i in range(3))
    definition = "def parse_header(raw):\n    head = raw[:10]\n    tail = raw[10:]\n    joined = head + tail\n    return joined\n"
    store = store_with({
        "file:///w/a_users.py": ("python", user), "file:///w/parser.py": ("python", definition), "file:///w/main.py": ("python", module("main", 1)),
    })  # fmt: skip
    block = choose(store, "file:///w/main.py", "value = parse_header(data)\n", budget=20)  # room for one chunk
    assert block.text.startswith("# parser.py\ndef parse_header(raw):") and "caller" not in block.text


# -- the language table (lsp_server.languages) is the one owner of comment syntax -----------------


def test_every_known_language_has_a_comment_syntax_that_its_lexer_reads_as_a_comment():
    from lsp_server.languages import _EXTENSIONS, _FAMILIES, LANGUAGES, language_of, scan

    for language_id, language in LANGUAGES.items():
        assert language.comment_prefix, language_id
        assert language.comment_prefix in language.line_comments, language_id
        assert scan(f"{language.comment_prefix} pkg/helpers ( [", language).comment, language_id
    assert set(_FAMILIES) | set(_FAMILIES.values()) <= set(LANGUAGES)
    assert set(_EXTENSIONS.values()) <= set(LANGUAGES)
    assert language_of("markdown").comment_prefix is None and language_of(None).comment_prefix is None


def test_the_header_is_written_in_the_documents_comment_syntax():
    lua = "".join(f"function alpha_function_{i}(x)\n  local y = x + {i}\n  local z = y * 2\n  return z\nend\n\n" for i in range(3))
    store = store_with({
        "file:///w/alpha.lua": ("lua", lua),
        "file:///w/main.lua": ("lua", "print(alpha_function_1(2))\n"),
        "file:///w/alpha.hs": ("haskell", lua),  # another language: never fed to Lua
    })  # fmt: skip
    block = choose(store, "file:///w/main.lua", "print(alpha_function_1(2))\n")
    assert block.text.startswith("-- alpha.lua\nfunction alpha_function_")
    assert "alpha.hs" not in block.text
