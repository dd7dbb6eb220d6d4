"""The second tool: a blastn search against a small database built at start-up.

The database is built with ``makeblastdb`` from ``data/demo-db.fa`` into the web
service's data directory; the job reads it there by its absolute path, so on a cluster
that directory must be on a file system the compute nodes share (or ``--blast-db`` names
a database they can read). The query is the job's stdin; its stdout is blastn's
tabular output (``-outfmt 6`` with the columns below).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import fasta

SOURCE = Path(__file__).resolve().parent / "data" / "demo-db.fa"
COLUMNS = ("qseqid", "sseqid", "pident", "length", "mismatch", "gapopen", "qstart", "qend",
           "sstart", "send", "evalue", "bitscore")
MAX_QUERY = 10_000


def build_database(directory: Path, source: Path = SOURCE) -> Path | None:
    """Build the demonstration database (once); return its path, or None without
    ``makeblastdb`` (the search page then says BLAST is not available)."""
    makeblastdb = shutil.which("makeblastdb")
    if makeblastdb is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "demo"
    if not Path(f"{db}.nsq").exists() and not Path(f"{db}.nal").exists():
        clean = directory / "demo.fa"
        clean.write_bytes(fasta.parse(source.read_text(), minimum=1).to_fasta())
        subprocess.run([makeblastdb, "-in", str(clean), "-dbtype", "nucl", "-out", str(db)],
                       check=True, capture_output=True, timeout=120)
    return db


def parse_query(text: str) -> fasta.Sequences:
    """One nucleotide sequence, FASTA or bare.

    Raises:
        fasta.FastaError: not one nucleotide sequence of at most ``MAX_QUERY`` bases.
    """
    if not text.lstrip().startswith(">"):
        text = ">query\n" + text
    query = fasta.parse(text, minimum=1)
    if len(query.items) != 1:
        raise fasta.FastaError(f"{len(query.items)} sequences given: search with one.")
    if not query.nucleotide:
        raise fasta.FastaError("The query is not a nucleotide sequence (blastn needs one).")
    if len(query.items[0].residues) > MAX_QUERY:
        raise fasta.FastaError(f"The query is longer than {MAX_QUERY} bases.")
    return query


def script(db: Path, blastn: str = "blastn") -> str:
    """The job's command: search the query (stdin) against ``db``."""
    return "\n".join([
        "set -eu",
        "cat > query.fa",
        'echo "20 searching" > "$ACJOB_PROGRESS"',
        f"{shlex.quote(blastn)} -task blastn -query query.fa -db {shlex.quote(str(db))} "
        f"-evalue 10 -max_target_seqs 50 -outfmt '6 {' '.join(COLUMNS)}'",
        'echo "100 done" > "$ACJOB_PROGRESS"',
        "",
    ])


@dataclass(frozen=True)
class Hit:
    subject: str
    identity: float
    length: int
    evalue: str
    bitscore: str
    query_range: str
    subject_range: str


def parse_hits(stdout: bytes) -> list[Hit]:
    """The hits in blastn's tabular output, best first (as blastn lists them).

    Raises:
        ValueError: a line is not one of blastn's.
    """
    hits = []
    for line in stdout.decode("utf-8", errors="replace").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise ValueError(f"not a blastn line: {line[:80]!r}")
        row = dict(zip(COLUMNS, fields, strict=True))
        hits.append(Hit(row["sseqid"], float(row["pident"]), int(row["length"]), row["evalue"],
                        row["bitscore"], f"{row['qstart']}-{row['qend']}",
                        f"{row['sstart']}-{row['send']}"))
    return hits
