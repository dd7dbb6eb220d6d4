"""The parts of ``bench/peers.py``: services it starts, systems it measures, its report.

Only :mod:`harness.common`, :mod:`harness.peer_driver`, the ``peer_*`` modules and
:mod:`harness.chart` run in the peers' virtual environment; everything else runs beside
acjob. None of it is part of acjob's package.
"""
