"""Batching: gathering consumed records into micro-batches (max records or max wait).

Imports the package root only.
"""
