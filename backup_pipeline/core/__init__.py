"""The backup library: names, manifests, PostgreSQL and storage plumbing, dump, verify, restore, prune.

Nothing here imports dagster: the Dagster definitions (defs/) and the command line (cli/) both build on it.
"""
