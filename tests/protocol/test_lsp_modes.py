"""Single- vs multi-line decisions and trims, seen through inline completion items."""

from tests.protocol.harness import fake_model, inline, lsp_session, open_document, stats

MULTI = "value = 1\n    return value\n\ndef other():\n    pass\n"
RULES = [
    {"after": "print(value, ", "text": "end=''))\nprint(value)"},  # mid-line; repeats the ")"
    {"after": "def f():\n    ", "text": MULTI},  # empty line in a block
    {"after": "class A:", "text": "\n    x = 1\n    y = 2\nz = 3\n"},  # after a block opener
    {"after": "def g(data):\n    ", "text": "data.sort()\n    return data\n    return data\n"},
]


async def test_single_line_multi_line_and_suffix_overlap():
    async with lsp_session({"model": fake_model(rules=RULES)}) as client:
        open_document(client, "file:///w/a.py", "print(value, )\n")
        [item] = await inline(client, "file:///w/a.py", 0, 13)
        assert item.insert_text == "end=''"  # one line, without the ")" already there

        open_document(client, "file:///w/b.py", "def f():\n    \n")
        [item] = await inline(client, "file:///w/b.py", 1, 4)
        assert item.insert_text == "value = 1\n    return value"  # stopped at the dedent

        open_document(client, "file:///w/c.py", "class A:\n")
        [item] = await inline(client, "file:///w/c.py", 0, 8)
        assert item.insert_text == "\n    x = 1\n    y = 2"

        open_document(client, "file:///w/d.py", "def g(data):\n    \n    return data\n")
        [item] = await inline(client, "file:///w/d.py", 1, 4)
        assert item.insert_text == "data.sort()"  # the next line of the file is not repeated

        assert (await stats(client))["modelCalls"] == 4


async def test_multi_line_cap_and_single_line_cap_are_separate():
    rules = [{"after": "x = ", "text": "a + b + c + d + e + f"}, {"after": "    \n", "text": "a\nb"}]
    async with lsp_session({"model": fake_model(rules=rules), "maxNewTokensSingleLine": 5, "maxNewTokens": 64}) as client:
        open_document(client, "file:///w/e.py", "x = \n")
        [item] = await inline(client, "file:///w/e.py", 0, 4)
        assert item.insert_text == "a + b"  # five tokens: a, space, +, space, b
