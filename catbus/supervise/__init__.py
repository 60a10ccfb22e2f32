"""Running a run: the registry (the control plane's socket), the launcher of node processes, the inline runner, run folders."""
