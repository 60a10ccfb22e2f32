"""Adapters that bring other ecosystems' environments into catbus as ordinary nodes, installed
with catbus so that a project's launch file can name them without a copy of this repository.

``catbus.adapters.gymnasium:GymnasiumEnv`` runs any registered Gymnasium environment as a catbus
environment node (``pip install 'catbus[gym]'``); ``catbus.adapters.policies:LinearPolicy`` is
a small fixed policy to drive it. Importing this package imports neither Gymnasium nor numpy.
"""
