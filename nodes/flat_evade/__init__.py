"""The flat_evade scenario: a robot reaches random goals while a human chases it (2-D, double
integrators). Behaviour is documented in ``docs/flat_evade.md``.

Modules, one job each:

* :mod:`.values`      -- messages are values: deep copies and column-vector helpers;
* :mod:`.noise`       -- the sensor noise operator (uniform of full width w, or Gaussian);
* :mod:`.world`       -- bodies, goals, one simulation step and one measurement;
* :mod:`.env`         -- :class:`FlatEvadeEnv`, the environment node;
* :mod:`.planner`     -- the task goal and the naive straight-line planner;
* :mod:`.controllers` -- the feedback controller and the safe controllers (closed forms);
* :mod:`.agent`       -- :class:`ModelBasedAgent`, the agent node.
"""
