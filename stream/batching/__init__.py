"""Batching: gathering consumed records into micro-batches."""
