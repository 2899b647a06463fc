from lsprotocol import types

from lsp_server.completion_items import popup_edit_text

SNIPPET, PLAIN = types.InsertTextFormat.Snippet, types.InsertTextFormat.PlainText


def test_plain_text_for_clients_without_snippets():
    assert popup_edit_text("a = {'$x': 1}", "    ", snippets=False) == ("a = {'$x': 1}", PLAIN)


def test_snippet_escapes_and_drops_the_cursor_lines_indent():
    text = "if x:\n        y = '$a}\\\\'\n\n    z()"
    assert popup_edit_text(text, "    ", snippets=True) == ("if x:\n    y = '\\$a\\}\\\\\\\\'\n\nz()", SNIPPET)


def test_a_line_indented_less_than_the_cursor_line_stays_plain_text():
    assert popup_edit_text("x\n  y", "    ", snippets=True) == ("x\n  y", PLAIN)


def test_crlf_lines_keep_their_carriage_returns():
    assert popup_edit_text("a\r\n\r\n    b", "    ", snippets=True) == ("a\r\n\r\nb", SNIPPET)
