"""Where new layers go in Krita's layer stack. Duck-typed so it is tested with fakes outside Krita.

Real Krita 5.1.5 (probed): `parent.childNodes()` lists children bottom to top; `parent.addChildNode(new,
above)` puts `new` directly ABOVE the node `above`, and with above=None at the TOP of the parent (not the
bottom). `Node.setChildNodes` crashed Krita, so it is not used.
"""
from __future__ import annotations


def same_node(a, b) -> bool:
    """Krita returns a fresh wrapper object on every call: compare the nodes' unique ids."""
    return a is not None and b is not None and a.uniqueId() == b.uniqueId()


def index_in(siblings: list, node) -> int:
    for i, s in enumerate(siblings):
        if same_node(s, node):
            return i
    raise ValueError("the layer is not a child of its parent any more (was it deleted?)")


def insert_below(parent, new, line) -> None:
    """Put `new` directly below `line` in `parent`, leaving every other layer where it was.

    When something is below `line`, `new` goes above that node. When `line` is the bottom child, the only
    way the API offers is to add `new` above `line` and re-attach `line` above `new`: the same layer (same
    id, pixels and keyframes), one step higher. Its pixels are never touched.
    """
    siblings = list(parent.childNodes())
    i = index_in(siblings, line)
    if i > 0:
        if not parent.addChildNode(new, siblings[i - 1]):
            raise RuntimeError("Krita refused to add the new layer (is the group locked?)")
        return
    if not parent.addChildNode(new, line):
        raise RuntimeError("Krita refused to add the new layer (is the group locked?)")
    if not parent.removeChildNode(line) or not parent.addChildNode(line, new):
        raise RuntimeError("Krita could not move the line-art layer above the new layer")


def insert_above(parent, new, line) -> None:
    """Put `new` directly above `line` (used for the flattened copy, which hides what is under it)."""
    if not parent.addChildNode(new, line):
        raise RuntimeError("Krita refused to add the new layer (is the group locked?)")


def stack_names(parent) -> list[str]:
    """Names bottom to top (for messages and tests)."""
    return [n.name() for n in parent.childNodes()]
