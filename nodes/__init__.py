"""Reusable catbus nodes (environments, agents, adapters); each scenario is a subpackage."""
