"""The Dagster code location: resources, assets, jobs, schedules, sensors and alerts over the core library."""
