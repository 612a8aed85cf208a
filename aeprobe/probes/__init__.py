"""Probes: measurements on any ``nn.Module`` that return small dataclass reports.

Import probes from their modules (``from aeprobe.probes.identity import identity_tests``);
plots live in :mod:`aeprobe.plots`, never here.
"""
