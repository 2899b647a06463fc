"""A ``Suggestion`` as LSP items: ghost text (``InlineCompletionItem``) or, for clients
without inline completion, one popup ``CompletionItem`` (a snippet where the client takes
them). Each item carries the ``santacoder.accepted`` command. Pure: no server state.
"""

from __future__ import annotations

from lsprotocol import types

from .completer import Suggestion

ACCEPTED_COMMAND = "santacoder.accepted"
LABEL_CHARS = 80


def inline_completion_list(answer: tuple[Suggestion, types.Position] | None) -> types.InlineCompletionList:
    """``answer``: the suggestion and the cursor it is inserted at (``None``: nothing)."""
    if answer is None or not answer[0].text:
        return types.InlineCompletionList(items=[])
    suggestion, cursor = answer
    item = types.InlineCompletionItem(
        insert_text=suggestion.text, range=types.Range(start=cursor, end=cursor), command=accept_command(suggestion)
    )
    return types.InlineCompletionList(items=[item])


def completion_list(answer: tuple[Suggestion, types.Position], line: str, snippets: bool) -> types.CompletionList:
    """The popup's one item for a non-empty suggestion; ``line``: the cursor line's text,
    ``snippets``: whether the client takes snippets."""
    suggestion, cursor = answer
    new_text, text_format = popup_edit_text(suggestion.text, line[: len(line) - len(line.lstrip(" \t"))], snippets)
    label = next((line.strip() for line in suggestion.text.splitlines() if line.strip()), suggestion.text)
    item = types.CompletionItem(
        label=label[:LABEL_CHARS],
        kind=types.CompletionItemKind.Text,
        detail="SantaCoder",
        documentation=suggestion.text,  # a plain string: every client takes it
        preselect=True,
        sort_text="0",
        insert_text_format=text_format,
        insert_text_mode=types.InsertTextMode.AdjustIndentation,
        text_edit=types.TextEdit(range=types.Range(start=cursor, end=cursor), new_text=new_text),
        command=accept_command(suggestion),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def accept_command(suggestion: Suggestion) -> types.Command:
    """Arguments: the suggestion's id, then the document version it was made for (clients and
    tests can check that an answer never belongs to an older version than its request's)."""
    arguments = [suggestion.suggestion_id, suggestion.document_version]
    return types.Command(title="Accept suggestion", command=ACCEPTED_COMMAND, arguments=arguments)


def popup_edit_text(text: str, indent: str, snippets: bool) -> tuple[str, types.InsertTextFormat]:
    """The popup item's text: a snippet where the client takes them, else plain text.

    Clients insert a plain-text edit of a popup item only up to its first word (Neovim 0.11),
    so multi-word suggestions go as snippets: ``\\ $ }`` escaped, and the cursor line's
    indentation removed from the following lines because the client adds it back
    (insertTextMode adjustIndentation). A line indented less than the cursor line cannot be
    written that way: such a suggestion stays plain text.
    """
    if not snippets:
        return text, types.InsertTextFormat.PlainText
    first, *rest = text.split("\n")
    lines = [first]
    for line in rest:
        if not line.strip():
            lines.append("\r" if line.endswith("\r") else "")
        elif line.startswith(indent):
            lines.append(line[len(indent) :])
        else:
            return text, types.InsertTextFormat.PlainText
    escaped = "\n".join(lines).replace("\\", "\\\\").replace("$", "\\$").replace("}", "\\}")
    return escaped, types.InsertTextFormat.Snippet
