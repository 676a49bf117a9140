"""Test doubles and fault tools for tests, the benchmark and simulations.

Kept out of ``lambdas/`` so nothing test-only ships in the Lambda asset.
"""
