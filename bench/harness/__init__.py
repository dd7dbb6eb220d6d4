"""The parts of ``bench/peers.py``: services it starts, systems it measures, its report.

:mod:`harness.common`, :mod:`harness.processes` and :mod:`harness.report` use the
standard library only: they run beside acjob and in the peers' virtual environment, where
:mod:`harness.peer_driver`, the ``harness.peer_*`` modules and :mod:`harness.chart` run.
The rest runs beside acjob. None of it is part of acjob's package.
"""
