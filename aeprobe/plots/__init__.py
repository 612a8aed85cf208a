"""Plotting, kept apart from measuring: every function takes arrays/reports and a path.

Uses the non-interactive Agg backend so it works on headless machines and in CI.
"""
from aeprobe.plots.common import heatmap, image_grid, line_plot, savefig

__all__ = ["heatmap", "image_grid", "line_plot", "savefig"]
