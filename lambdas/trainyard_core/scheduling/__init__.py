"""The scheduler: the pure policy (policy.py), one module per event it handles
(intake, completion, dispatch, reconcile, queries) over the shared context and
queue reads (context.py, queues.py), and their facade ``SchedulerService``
(service.py), built from a Lambda's environment by factory.py."""
