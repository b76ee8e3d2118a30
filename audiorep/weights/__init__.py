"""Weights: loading, conversion, the hub, and export."""
