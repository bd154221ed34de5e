"""Runners for notebook models: the commands jobyard starts as the job's process.

``python -m jobyard.runners.jupyter`` executes a Jupyter ``.ipynb`` and
``python -m jobyard.runners.zeppelin`` an Apache Zeppelin note; both report cells or
paragraphs through :mod:`jobyard.markers` lines on stdout.
"""
