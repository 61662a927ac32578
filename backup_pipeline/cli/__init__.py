"""`backup-db`: back up, list, inspect, verify, restore and prune from the command line.

`list` and `info` read storage directly and never import Dagster, so they answer at once; the verbs that
do work run as Dagster runs in the instance at DAGSTER_HOME, so they show in the UI.
"""
