"""Plotting, kept apart from measuring: every function takes arrays/reports and a path.

Figures are standalone matplotlib ``Figure`` objects written atomically; importing this
package leaves matplotlib's backend and pyplot state alone (see :mod:`aeprobe.plots.common`).
"""
from aeprobe.plots.common import heatmap, image_grid, image_scale, line_plot, savefig, subplots

__all__ = ["heatmap", "image_grid", "image_scale", "line_plot", "savefig", "subplots"]
