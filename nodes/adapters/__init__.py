"""The Gymnasium adapter and its linear policy under their first path.

They live in :mod:`catbus.adapters` (installed with catbus); ``nodes.adapters.gymnasium`` and
``nodes.adapters.policies`` re-export the same classes, so launch files and recordings that name
the old path keep working and name the very same class.
"""
