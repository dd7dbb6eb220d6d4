"""A small Newick parser and a rectangular tree drawing, as server-side SVG.

Enough of Newick for what FastTree writes (names, branch lengths, support values as
internal labels, quoted labels), so the page can show a picture and not a string.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


class NewickError(ValueError):
    """The text is not a Newick tree."""


@dataclass
class Node:
    name: str = ""
    length: float | None = None
    children: list[Node] = field(default_factory=list)

    def leaves(self) -> list[Node]:
        """The leaves below this node, left to right."""
        if not self.children:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]


def parse(text: str) -> Node:
    """Parse one Newick tree (``…;``).

    Raises:
        NewickError: the text is not one well-formed tree.
    """
    parser = _Parser(text.strip())
    root = parser.subtree()
    parser.expect(";")
    if parser.pos != len(parser.text):
        raise NewickError(f"text after the tree at character {parser.pos}")
    return root


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def expect(self, char: str) -> None:
        if self.peek() != char:
            found = self.peek() or "the end"
            raise NewickError(f"expected {char!r} at character {self.pos}, found {found!r}")
        self.pos += 1

    def subtree(self) -> Node:
        node = Node()
        if self.peek() == "(":
            self.pos += 1
            node.children.append(self.subtree())
            while self.peek() == ",":
                self.pos += 1
                node.children.append(self.subtree())
            self.expect(")")
        node.name = self.label()
        if self.peek() == ":":
            self.pos += 1
            number = self.token()
            try:
                node.length = float(number)
            except ValueError:
                raise NewickError(f"bad branch length {number!r}") from None
        return node

    def label(self) -> str:
        if self.peek() == "'":
            self.pos += 1
            out: list[str] = []
            while True:
                end = self.text.find("'", self.pos)
                if end < 0:
                    raise NewickError("unterminated quoted label")
                out.append(self.text[self.pos:end])
                self.pos = end + 1
                if self.text.startswith("'", self.pos):  # '' is a quote inside
                    out.append("'")
                    self.pos += 1
                    continue
                return "".join(out)
        return self.token()

    def token(self) -> str:
        self.skip_space()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in "(),:;'[" \
                and not self.text[self.pos].isspace():
            self.pos += 1
        return self.text[start:self.pos]


# -- drawing ----------------------------------------------------------------------------

ROW = 22          # pixels between leaves
MARGIN = 12
WIDTH = 560       # of the branches; labels come to the right of it
CHAR = 7.5        # a rough width of a label's character


def to_svg(root: Node) -> str:
    """Draw the tree as a rectangular phylogram: leaves in rows, x the distance from the
    root (by branch lengths; by depth where the tree has none), each clade joined by a
    vertical line. Internal labels (FastTree's support values) are shown small."""
    leaves = root.leaves()
    has_lengths = any(n.length is not None for n in _walk(root))
    x: dict[int, float] = {}
    y: dict[int, float] = {}

    def place_x(node: Node, at: float) -> None:
        x[id(node)] = at
        for child in node.children:
            step = (child.length or 0.0) if has_lengths else 1.0
            place_x(child, at + max(step, 0.0))

    place_x(root, 0.0)
    for row, leaf in enumerate(leaves):
        y[id(leaf)] = MARGIN + row * ROW + ROW / 2

    def place_y(node: Node) -> float:
        if node.children:
            ys = [place_y(child) for child in node.children]
            y[id(node)] = (min(ys) + max(ys)) / 2
        return y[id(node)]

    place_y(root)
    depth = max(x.values()) or 1.0
    scale = WIDTH / depth

    def px(node: Node) -> float:
        return MARGIN + x[id(node)] * scale

    lines: list[str] = []
    texts: list[str] = []
    for node in _walk(root):
        if node.children:
            top, bottom = y[id(node.children[0])], y[id(node.children[-1])]
            lines.append(f"M{px(node):.1f},{top:.1f}V{bottom:.1f}")
            for child in node.children:
                lines.append(f"M{px(node):.1f},{y[id(child)]:.1f}H{px(child):.1f}")
            if node.name and node is not root:
                texts.append(f'<text class="support" x="{px(node) + 3:.1f}" '
                             f'y="{y[id(node)] - 3:.1f}">{html.escape(node.name)}</text>')
        else:
            texts.append(f'<text class="leaf" x="{px(node) + 6:.1f}" '
                         f'y="{y[id(node)] + 4:.1f}">{html.escape(node.name)}</text>')
    label_width = max((len(leaf.name) for leaf in leaves), default=0) * CHAR
    width = MARGIN * 2 + WIDTH + 6 + label_width
    height = MARGIN * 2 + len(leaves) * ROW
    return (f'<svg class="tree" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height}" viewBox="0 0 {width:.0f} {height}" role="img" '
            f'aria-label="tree of {len(leaves)} sequences">'
            f'<path d="{"".join(lines)}" fill="none" stroke="#234" stroke-width="1.5"/>'
            f'{"".join(texts)}</svg>')


def _walk(node: Node) -> list[Node]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out
