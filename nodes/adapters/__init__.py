"""Adapters that bring other ecosystems' environments into catbus as ordinary nodes.

``nodes.adapters.gymnasium:GymnasiumEnv`` runs any registered Gymnasium environment as a catbus
environment node; ``nodes.adapters.policies:LinearPolicy`` is a small fixed policy to drive it
(``launch/cartpole.yaml``).
"""
