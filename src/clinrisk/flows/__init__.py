"""Prefect flows (retrain, monitor, batch-score): each composes tasks that wrap plain functions."""
