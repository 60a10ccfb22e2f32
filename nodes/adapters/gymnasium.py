"""``nodes.adapters.gymnasium:GymnasiumEnv`` is :class:`catbus.adapters.gymnasium.GymnasiumEnv`
(the class is installed with catbus; this path keeps older launch files working)."""

from catbus.adapters.gymnasium import GymnasiumEnv

__all__ = ["GymnasiumEnv"]
