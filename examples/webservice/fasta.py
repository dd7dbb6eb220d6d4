"""Checking the sequences a user pasted or uploaded, before any job is submitted.

Everything a user can get wrong is said here, in their words, so that the form can show
it (a 400 page) and no job is ever started on input the tools would choke on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_BYTES = 1 << 20          # the whole input
MAX_SEQUENCES = 500
MIN_SEQUENCES = 3            # FastTree needs three to make a tree
MAX_NAME = 30                # clustalw cuts longer names

# Names end up in a Newick tree: no spaces, parentheses, colons, commas or quotes.
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_RESIDUES = re.compile(r"[A-Za-z*\-]*")
_NUCLEOTIDES = frozenset("ACGTUN")
_AMBIGUITY = frozenset("RYKMSWBDHV")


class FastaError(ValueError):
    """The input is not FASTA the pipeline can use; the message says why."""


@dataclass(frozen=True)
class Sequence:
    name: str
    residues: str


@dataclass(frozen=True)
class Sequences:
    """Valid input: the sequences and whether they are nucleotides (else protein)."""

    items: tuple[Sequence, ...]
    nucleotide: bool

    def to_fasta(self) -> bytes:
        """The sequences as clean FASTA (one line per sequence), as the job reads them."""
        return "".join(f">{s.name}\n{s.residues}\n" for s in self.items).encode()


def parse(text: str, *, minimum: int = MIN_SEQUENCES) -> Sequences:
    """Parse and check FASTA text.

    Raises:
        FastaError: the text is too large, not FASTA, has too few or too many sequences,
            a bad or repeated name, an empty sequence or characters that are no residues.
    """
    if len(text.encode()) > MAX_BYTES:
        raise FastaError(f"The input is larger than {MAX_BYTES // 1024} KiB.")
    items: list[Sequence] = []
    name: str | None = None
    parts: list[str] = []
    seen: set[str] = set()

    def close() -> None:
        if name is None:
            return
        residues = "".join(parts)
        if not residues.replace("-", ""):
            raise FastaError(f"Sequence {name!r} is empty.")
        items.append(Sequence(name, residues.upper()))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            close()
            words = line[1:].split()
            if not words:
                raise FastaError(f"Line {number}: a sequence without a name.")
            name = words[0]
            if len(name) > MAX_NAME or not _NAME.fullmatch(name):
                raise FastaError(
                    f"Line {number}: the name {name[:40]!r} must be 1 to {MAX_NAME} letters, "
                    "digits, '_', '.' or '-'.")
            if name in seen:
                raise FastaError(f"Line {number}: the name {name!r} is used twice.")
            seen.add(name)
            parts = []
            if len(seen) > MAX_SEQUENCES:
                raise FastaError(f"More than {MAX_SEQUENCES} sequences.")
            continue
        if name is None:
            raise FastaError(f"Line {number}: expected a '>name' line first: this is not FASTA.")
        compact = "".join(line.split())
        if not _RESIDUES.fullmatch(compact):
            bad = next(c for c in compact if not (c.isascii() and (c.isalpha() or c in "*-")))
            raise FastaError(
                f"Line {number}: {bad!r} is not a residue (letters, '-' and '*' only).")
        parts.append(compact)
    close()
    if len(items) < minimum:
        raise FastaError(
            f"{len(items)} sequence(s) given: at least {minimum} are needed.")
    return Sequences(tuple(items), _is_nucleotide(items))


def _is_nucleotide(items: list[Sequence]) -> bool:
    residues = "".join(s.residues for s in items).replace("-", "")
    letters = set(residues)
    if not letters <= _NUCLEOTIDES | _AMBIGUITY:
        return False
    plain = sum(residues.count(c) for c in _NUCLEOTIDES)
    return plain >= 0.9 * len(residues)
