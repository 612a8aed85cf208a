"""``aeprobe inspect``: one report on a user's own autoencoder (``aeprobe.inspect`` / the ``aeprobe inspect`` command).

::

    import aeprobe
    rep = aeprobe.inspect(model, x_train, x_test, labels=y_train, out="runs/inspect")   # model or view
    print(rep)                                   # one line per section: done / not applicable (why)

    aeprobe inspect --model mymodels:conv_ae --weights ae.safetensors --data npy:train.npy \\
        --heldout npy:test.npy --out runs/inspect

Sections (the keys of ``results.json``): ``architecture``, ``code``, ``identity``, ``overfitting``,
``homogeneity``, ``checkerboard``, ``attribution``, ``ablation``, ``interpolation``, ``probe``.
Each names the probe and arguments that made it, carries a figure and a one-line reading computed
from its numbers, or says in one line why it does not apply.

Modules: :mod:`~aeprobe.inspection.run` (the function), :mod:`~aeprobe.inspection.sections` (one
measurement per section), :mod:`~aeprobe.inspection.readings` (readings and report from the
numbers), :mod:`~aeprobe.inspection.budget` (quick / full caps), :mod:`~aeprobe.inspection.ops`
(which ops a decoder runs, and whether Prop. 1 must hold), :mod:`~aeprobe.inspection.command`
(the command line).
"""
from aeprobe.inspection.budget import Budget
from aeprobe.inspection.run import InspectReport, inspect

__all__ = ["inspect", "InspectReport", "Budget"]
