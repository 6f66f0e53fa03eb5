"""Environments: the batched dream core (dream.py) and real-env helpers (real.py)."""
