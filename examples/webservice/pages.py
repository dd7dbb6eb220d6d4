"""The HTML pages, as plain f-strings: every value from outside goes through
``html.escape`` (or ``json.dumps`` inside the one script). CSS and JS are inline: no
build step, nothing fetched from elsewhere."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING

from fasta import MAX_BYTES, MAX_SEQUENCES, MIN_SEQUENCES

if TYPE_CHECKING:
    from blast import Hit

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:62rem;padding:0 1rem;color:#123}
h1{font-size:1.5rem} a{color:#0a58ca} textarea{width:100%;font:13px monospace}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem 1rem;border-radius:4px}
.note{color:#555} pre{background:#f4f4f4;padding:.8rem;overflow:auto;max-height:30rem}
progress{width:20rem;vertical-align:middle} svg.tree text{font:13px sans-serif}
svg.tree text.support{font-size:10px;fill:#888} button{font-size:1rem;padding:.3rem 1rem}
table.hits{border-collapse:collapse} table.hits td,table.hits th{padding:.2rem .6rem;
border-bottom:1px solid #ddd;text-align:right} table.hits td:first-child{text-align:left}
"""

EXAMPLE = """>human
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCCGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGG
>chimp
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCCGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGG
>gorilla
ATGGTGCACCTGACTCCTGAGGAGAAGTCTGCAGTTACTGCCCTGTGGGGCAAGGTGAACGTGGATGAAGTTGGTGGTGAGG
>mouse
ATGGTGCACCTGACTGATGCTGAGAAGTCTGCTGTCTCTTGCCTGTGGGCAAAGGTGAACCCCGATGAAGTTGGTGGTGAGG
>chicken
ATGGTGCACTGGACTGCTGAGGAGAAGCAGCTCATCACCGGCCTCTGGGGCAAGGTCAATGTGGCCGAATGTGGGGCCGAAG
"""


def layout(title: str, body: str, *, head: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style>{head}</head>"
            f'<body><p class="note"><a href="/">Sequences to tree</a> · '
            f'<a href="/blast">Search (blastn)</a> · runs through acjob</p>'
            f"{body}</body></html>")


def form(token: str, *, sequences: str = "", error: str | None = None) -> str:
    problem = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return layout("Sequences to tree", f"""
<h1>From sequences to a tree</h1>
<p>Paste {MIN_SEQUENCES} to {MAX_SEQUENCES} sequences in FASTA (nucleotides or protein, up to
{MAX_BYTES // 1024} KiB), or upload a file. They are aligned with clustalw and a tree is
built with FastTree, as a job that may take as long as it needs: its page follows it.</p>
{problem}
<form method="post" action="/jobs" enctype="multipart/form-data">
<input type="hidden" name="token" value="{escape(token)}">
<p><textarea name="sequences" id="sequences" rows="14"
 placeholder=">name&#10;ACGT…">{escape(sequences)}</textarea></p>
<p>or a file: <input type="file" name="file" accept=".fa,.fasta,.fas,.txt"></p>
<p><button type="submit" id="submit">Align and build the tree</button>
<button type="button" id="example">Fill in an example</button></p>
</form>
<script>
document.getElementById("example").onclick = () => {{
  document.getElementById("sequences").value = {json.dumps(EXAMPLE)};
}};
</script>""")


def error(title: str, message: str, *, detail: str | None = None,
          refresh: int | None = None) -> str:
    head = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    more = f"<pre id=\"detail\">{escape(detail)}</pre>" if detail else ""
    retry = (f'<p class="note">This page tries again every {refresh} seconds.</p>'
             if refresh else "")
    return layout(title, f'<h1>{escape(title)}</h1><p class="error" id="error">'
                         f"{escape(message)}</p>{more}{retry}", head=head)


def blast_form(token: str, *, query: str = "", error: str | None = None,
               available: bool = True) -> str:
    problem = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    if not available:
        problem += ('<p class="error">BLAST is not installed here: '
                    "<code>apt-get install ncbi-blast+</code> and restart.</p>")
    return layout("Search with blastn", f"""
<h1>Search a nucleotide sequence with blastn</h1>
<p>One nucleotide sequence (FASTA or bare bases) is searched against the small
demonstration database this service built at start-up.</p>
{problem}
<form method="post" action="/blast">
<input type="hidden" name="token" value="{escape(token)}">
<p><textarea name="query" id="query" rows="8"
 placeholder=">query&#10;ACGT…">{escape(query)}</textarea></p>
<p><button type="submit" id="submit">Search</button></p>
</form>""")


def hits(job_id: str, found: list[Hit]) -> str:
    """The hits of a search, as a table."""
    if not found:
        return '<h2>Hits</h2><p id="hits">No hits.</p>'
    rows = "".join(
        f"<tr><td>{escape(h.subject)}</td><td>{h.identity:.1f}%</td><td>{h.length}</td>"
        f"<td>{escape(h.query_range)}</td><td>{escape(h.subject_range)}</td>"
        f"<td>{escape(h.evalue)}</td><td>{escape(h.bitscore)}</td></tr>" for h in found)
    return (f'<h2>Hits</h2><table class="hits" id="hits"><thead><tr><th>subject</th>'
            "<th>identity</th><th>length</th><th>query</th><th>subject</th><th>E-value</th>"
            f"<th>bits</th></tr></thead><tbody>{rows}</tbody></table>"
            f'<p><a id="tabular" href="/jobs/{escape(job_id)}/result">blastn\'s tabular '
            "output</a></p>")


def job(job_id: str, status: dict[str, object], *, svg: str | None = None,
        stderr: str | None = None, hits: str | None = None) -> str:
    """The job's page. While the job runs, a small script asks ``status.json`` every
    second and redraws the state and progress; once the job is final it reloads the
    page, which the server then renders with the tree (or the error)."""
    percent = status.get("percent")
    value = f'value="{float(percent):.0f}"' if isinstance(percent, int | float) else ""
    shown = f"{float(percent):.0f}%" if isinstance(percent, int | float) else ""
    parts = [
        f"<h1>Job <code>{escape(job_id)}</code></h1>",
        f'<p>State: <strong id="state">{escape(str(status["state"]))}</strong></p>',
        f'<p><progress id="bar" max="100" {value}></progress> <span id="percent">{shown}</span>'
        f' <span id="stage">{escape(str(status.get("message") or ""))}</span></p>',
        '<p class="note" id="note"></p>',
    ]
    if svg is not None:
        parts.append(f'<h2>Tree</h2><div id="tree">{svg}</div>'
                     f'<p><a id="alignment" href="/jobs/{escape(job_id)}/alignment">'
                     f'the alignment (FASTA)</a> · <a id="newick" '
                     f'href="/jobs/{escape(job_id)}/result">the tree (Newick)</a></p>')
    if hits is not None:
        parts.append(hits)
    if stderr is not None:
        parts.append(f'<h2>The job failed</h2><p class="error" id="error">'
                     f'{escape(str(status.get("reason") or "the job ended with an error"))}'
                     f' (exit status {escape(str(status.get("exit_code")))})</p>'
                     f'<p>What the tools said:</p><pre id="stderr">{escape(stderr)}</pre>')
    if not status.get("final"):
        parts.append(_FOLLOW.replace("STATUS_URL", json.dumps(f"/jobs/{job_id}/status.json")))
    return layout(f"Job {job_id}", "\n".join(parts))


_FOLLOW = """<script>
(() => {
  const url = STATUS_URL;
  const $ = (id) => document.getElementById(id);
  async function tick() {
    try {
      const answer = await fetch(url, {cache: "no-store"});
      const body = await answer.json();
      if (answer.ok) {
        $("state").textContent = body.state;
        if (body.percent !== null) {
          $("bar").value = body.percent;
          $("percent").textContent = Math.round(body.percent) + "%";
        }
        $("stage").textContent = body.message || "";
        $("note").textContent = body.learned_by === "callback" ? "told by callback" : "";
        if (body.final) { location.reload(); return; }
      } else {
        $("note").textContent = (body.error || "acjob cannot be reached") + "; trying again…";
      }
    } catch (e) {
      $("note").textContent = "The web service cannot be reached; trying again…";
    }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();
</script>"""
