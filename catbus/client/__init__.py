"""A client of live runs: finding a run, asking its registry, swaps. The CLI and the Foxglove bridge use it."""
