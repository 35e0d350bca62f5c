"""What the answer will ask of a read, so the read loads nothing nobody selected.

Both functions read the resolver's selection with fragments (named and inline) followed and `@skip`/`@include`
ignored: a field that might be asked counts as asked. A read that leaves something out because it was not
selected still answers it if asked (the field loads it for its whole list): a miss here costs a query, never an
answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from strawberry.types import Info
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection


def _flattened(selections: Iterable[Selection]) -> Iterable[SelectedField]:
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        elif isinstance(selection, FragmentSpread | InlineFragment):
            yield from _flattened(selection.selections)


def child_names(info: Info) -> set[str]:
    """The fields selected directly on the value this resolver returns (of every list item, for a list)."""
    return {child.name for field in info.selected_fields for child in _flattened(field.selections)}


def selected_anywhere(info: Info, name: str) -> bool:
    """Whether a field called `name` is selected at any depth below this resolver's field."""
    pending = [child for field in info.selected_fields for child in _flattened(field.selections)]
    while pending:
        field = pending.pop()
        if field.name == name:
            return True
        pending.extend(_flattened(field.selections))
    return False
