"""Downstream tasks on audiorep upstreams: featurizer, heads, tasks, metrics."""
