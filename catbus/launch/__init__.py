"""The run's side: launch files, the registry, the multi-process launcher, the inline runner, and
the Python API that drives them."""
