"""The scheduler: pure policy (policy.py), orchestration (service.py), ports (ports.py)."""
