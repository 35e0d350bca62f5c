"""What the answer will ask of a read, so the read loads nothing nobody selected.

Both functions read the resolver's selection with fragments (named and inline) followed and `@skip`/`@include`
ignored: a field that might be asked counts as asked. A read that leaves something out because it was not
selected still answers it if asked (the field loads it for its whole list): a miss here costs a query, never an
answer. They walk the document's own nodes: strawberry's `info.selected_fields` converts the whole selection below
the field into objects (with its arguments), thousands of calls for a page's root field.
"""

from __future__ import annotations

from collections.abc import Iterable

from graphql import FieldNode, FragmentSpreadNode, GraphQLResolveInfo, InlineFragmentNode, SelectionSetNode
from strawberry.types import Info


def _fields(info: GraphQLResolveInfo, selection_set: SelectionSetNode | None) -> Iterable[FieldNode]:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(info, selection.selection_set)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = info.fragments.get(selection.name.value)
            if fragment is not None:
                yield from _fields(info, fragment.selection_set)


def _children(info: Info) -> list[FieldNode]:
    raw = info._raw_info
    return [child for node in raw.field_nodes for child in _fields(raw, node.selection_set)]


def child_names(info: Info) -> set[str]:
    """The fields selected directly on the value this resolver returns (of every list item, for a list)."""
    return {child.name.value for child in _children(info)}


def selected_anywhere(info: Info, name: str) -> bool:
    """Whether a field called `name` is selected at any depth below this resolver's field."""
    raw = info._raw_info
    pending = _children(info)
    while pending:
        field = pending.pop()
        if field.name.value == name:
            return True
        pending.extend(_fields(raw, field.selection_set))
    return False
