"""Probes: measurements on autoencoders that return small dataclass reports.

Every probe takes a model or an :func:`aeprobe.autoencoder` view (a plain model is read with the
view's default detection), refuses before any work when the view lacks what it needs (``encode``,
``decode``, the reconstruction), and leaves the model as it found it: weights, modes, flags, device.
Import probes from their modules (``from aeprobe.probes.identity import identity_tests``);
plots live in :mod:`aeprobe.plots`, never here.
"""
