"""Jobs' specs as the store reads them: each job's stored JSON text validated into the
model once, then kept for the next reads of the same job.

A job's spec never changes once the job is recorded (no statement updates
``jobs.spec``), and the daemon reads the same few jobs again and again while they run
(each request about them, each monitor cycle, each transaction that moves them on):
validating the text every time was a tenth of the daemon's work per job. Specs are
kept by job id *with the text they were made from*, and a kept spec is used only for
that very text, so a cached spec can never stand for another one (a job removed and
an id used again, another store in the same process). The cache holds at most
:data:`MAX_SPECS` specs, the oldest going first: it bounds memory, never correctness
(a spec no longer kept is validated again).

Whoever gets a spec from here shares it with later readers: nobody changes a job's
spec in place (a job is a frozen record, and its spec is what the client asked for).
"""

from __future__ import annotations

from collections import OrderedDict

from ..model import JobSpec

#: Specs kept at most: more than a dispatch takes at a time (200) and the jobs a local
#: backend runs at once, at about 3.5 KiB each (7 MiB in all, at most).
MAX_SPECS = 2048

#: An OrderedDict: a plain dict's oldest key is found by a scan over the slots its
#: deleted keys left, which grows with every eviction until the dict is resized.
_kept: OrderedDict[str, tuple[str, JobSpec]] = OrderedDict()


def spec_of(job_id: str, text: str) -> JobSpec:
    """Return the spec stored as ``text`` for job ``job_id``: validated once, then kept.

    Raises:
        pydantic.ValidationError: ``text`` is not a valid spec.
    """
    found = _kept.get(job_id)
    if found is not None and found[0] == text:
        return found[1]
    spec = JobSpec.model_validate_json(text)
    if job_id not in _kept and len(_kept) >= MAX_SPECS:
        _kept.popitem(last=False)
    _kept[job_id] = (text, spec)
    return spec
