"""The ports: every interface the domain depends on, one module per concern.

- ``runs``: the run repository (runs and scheduler state), its errors and records,
  the slot counter names and the upload de-duplication rule.
- ``tenants``: the tenant repository and its errors.
- ``pipeline``: the training pipeline (start, describe, list executions).
- ``metrics``: the metrics sink.
- ``provisioning``: tenant stacks, data purges and moves, the model registry.

Implementations live in ``store/`` (DynamoDB and in-memory), ``sagemaker_port``,
``provisioning`` and ``model_registry``; nothing here imports boto3.
"""
