"""The trapgate node: receivers, pipeline, sinks, admin API, config and CLI."""
