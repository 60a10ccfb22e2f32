"""``nodes.adapters.policies:LinearPolicy`` is :class:`catbus.adapters.policies.LinearPolicy`
(the class is installed with catbus; this path keeps older launch files working)."""

from catbus.adapters.policies import LinearPolicy

__all__ = ["LinearPolicy"]
