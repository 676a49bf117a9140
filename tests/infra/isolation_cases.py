"""The isolation world and case types shared by the silo and pool proofs.

`deployed()` builds the world of one isolation model in moto: the real synthesized
tenant template of that model (`TENANT_STACK_IDS`, from the session synthesis)
deployed with CreateStack for `acme` (A), `globex` (B) and `canary` (the one the
mutation tests change), the platform bucket (in pool also the shared pool bucket)
and the seed objects. `Pair.values()` is what that model supplies to the case
templates of `isolation_table.CASES`; `run_case` decides one case for one pair, offline
and, where moto can express it, with a real call. docs/isolation.md §3 and §7.3.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from trainyard_core import wiring
from trainyard_core.config import Isolation

from infra.tenant_template import ISOLATIONS, TENANT_STACK_IDS
from tests.infra.isolation_support import (
    ACCOUNT,
    Decision,
    DeployedTenant,
    Request,
    create_bucket,
    create_queue,
    deploy_tenant,
    evaluate,
    inline_policies,
    observe,
)
from tests.infra.synth_support import Synth

Model = Isolation
TENANTS = ("acme", "globex", "canary")
STEP_CODE_KEY = "code/pipeline/v1/preprocess.py"
UPLOAD = "data/train.csv"  # relative to a tenant's key root ("" in silo, tenants/<id>/ in pool)
MODEL = "artifacts/run-1/model/model.tar.gz"
# A tenant id that extends another one: `tenants/<id>*` (no slash) would reach it.
SIBLING_SUFFIX = "-corp"


# --------------------------------------------------------------------------- #
# The world of one model: its tenants deployed from the real template
# --------------------------------------------------------------------------- #


@dataclass
class World:
    model: Model
    synth: Synth
    tenants: dict[str, DeployedTenant] = field(default_factory=dict)
    # tenant id -> url of the queue its rule targets (silo: the plan's, shared;
    # pool: one per tenant, so the queue that receives an event names the rule)
    queues: dict[str, str] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return self.synth.settings.region

    @property
    def names(self) -> wiring.Names:
        return self.synth.names

    @property
    def platform_bucket(self) -> str:
        return self.names.platform_bucket(ACCOUNT)

    @property
    def pool_bucket(self) -> str:
        return self.names.pool_bucket(ACCOUNT)

    @property
    def template_key(self) -> str:
        """Where the platform bucket keeps this model's tenant template."""
        return f"templates/tenant-stack-{self.model}.template.json"

    def location(self, tenant_id: str) -> tuple[str, str]:
        """(bucket, key root) of a tenant: what it owns is under bucket/root."""
        bucket, root, _ = self.names.tenant_location(self.model, tenant_id, ACCOUNT)
        return bucket, root

    def tenant_key(self, tenant_id: str, relative: str) -> str:
        return self.location(tenant_id)[1] + relative

    def access_log(self, tenant_id: str) -> str:
        """A log of the tenant's data bucket in the platform bucket (access-logs/<tenant>/
        in silo; in pool the shared bucket's access-logs/pool/, every tenant's keys)."""
        folder = tenant_id if self.model == "silo" else "pool"
        return f"access-logs/{folder}/2030-01-01-00-00-00-LOG"


@contextmanager
def deployed(synth: Synth, model: Model) -> Iterator[World]:
    """The world of `model` in mock_aws, for a module-scoped fixture."""
    from moto import mock_aws

    names, region = synth.names, synth.settings.region
    plan = next(p for p, cfg in synth.settings.plans.items() if cfg.isolation == model)
    with pytest.MonkeyPatch.context() as env:
        # The embedded stack points boto3 elsewhere; these calls must reach mock_aws.
        for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
            env.delenv(key)
        with mock_aws():
            world = World(model, synth)
            create_bucket(world.platform_bucket, region=region)
            if model == "pool":  # owned by the platform stack, which moto does not run
                create_bucket(world.pool_bucket, region=region)
            queue_names = {
                t: names.intake_queue(plan) if model == "silo" else f"isolation-intake-{t}"
                for t in TENANTS
            }
            queues = {n: create_queue(n, region=region) for n in set(queue_names.values())}
            for t in TENANTS:
                url, arn = queues[queue_names[t]]
                world.queues[t] = url
                world.tenants[t] = deploy_tenant(
                    synth.templates[TENANT_STACK_IDS[model]],
                    t,
                    plan=plan,
                    queue_arn=arn,
                    region=region,
                )
            _seed(world)
            yield world


def world_fixture(model: Model, name: str = "world") -> Any:
    """A module-scoped fixture `name`: the world of `model` (see `deployed`)."""

    @pytest.fixture(scope="module", name=name)
    def fixture(synth: Synth) -> Iterator[World]:
        with deployed(synth, model) as world:
            yield world

    return fixture


def _seed(world: World) -> None:
    s3 = boto3.client("s3", region_name=world.region)
    platform_keys = {STEP_CODE_KEY, world.template_key, *map(world.access_log, TENANTS)}
    for key in sorted(platform_keys):
        s3.put_object(Bucket=world.platform_bucket, Key=key, Body=b"platform")
    # In pool, a tenant whose id extends acme's shares the bucket (no stack needed).
    owners = (*TENANTS, "acme" + SIBLING_SUFFIX) if world.model == "pool" else TENANTS
    for t in owners:
        bucket, root = world.location(t)
        s3.put_object(Bucket=bucket, Key=root + UPLOAD, Body=b"x,y\n1,2\n")
        s3.put_object(Bucket=bucket, Key=root + MODEL, Body=b"model")
    if world.model == "pool":
        # Notifications on after seeding, so the queues start empty.
        s3.put_bucket_notification_configuration(
            Bucket=world.pool_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )


@dataclass
class Pair:
    """Tenant A (whose credentials make the calls) and tenant B (the victim)."""

    world: World
    a: DeployedTenant
    b: DeployedTenant
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.a.client(service)
        return self._clients[service]

    def values(self) -> dict[str, str]:
        """What the case templates are formatted with, as this pair's model lays it out."""
        world, names = self.world, self.world.names
        a, b = self.a.tenant_id, self.b.tenant_id
        (a_bucket, a_root), (b_bucket, b_root) = world.location(a), world.location(b)
        return {
            "account": ACCOUNT,
            "region": world.region,
            "a_bucket": a_bucket,  # A's data bucket (pool: the pool bucket)
            "a_root": a_root,  # the key root A owns in it ("" in silo, tenants/<a>/ in pool)
            "a_partial": a_root.rstrip("/"),  # pool: tenants/<a>, which also covers a sibling
            "a_sibling": world.location(a + SIBLING_SUFFIX)[1],  # pool: tenants/<a>-corp/
            "b_bucket": b_bucket,
            "b_root": b_root,
            "b_id": b,
            "a_role_arn": self.a.role_arn,
            "b_role_arn": self.b.role_arn,
            "b_group": self.b.outputs["ModelPackageGroupName"],
            "a_rule_arn": self.a.outputs["UploadRuleArn"],
            "b_rule": names.tenant_rule(b),
            "b_stack": self.b.stack_name,
            "b_queue_url": world.queues[b],
            "b_queue": world.queues[b].rsplit("/", 1)[1],
            "b_access_log": world.access_log(b),
            "platform": world.platform_bucket,
            "template_key": world.template_key,
            "pipeline": names.pipeline_name,
            "tenants_table": names.tenants_table,
            "recorder": names.function("recorder"),
            "uploader_role_arn": names.uploader_role_arn("aws", ACCOUNT),
        }


def pair(world: World, a: str, b: str) -> Pair:
    return Pair(world, world.tenants[a], world.tenants[b])


# --------------------------------------------------------------------------- #
# A case (the table is isolation_table.CASES), and how one is decided
# --------------------------------------------------------------------------- #

Probe = Callable[[Pair], Any]

# Why a case has no moto probe (keys explained in docs/isolation.md §3).
MOTO_IGNORES_CONDITIONS = "condition"  # moto ignores s3:prefix, cloudwatch:namespace
MOTO_RESOURCE_STAR = "resource"  # moto checks logs/ECR calls against "*", not the ARN
MOTO_LAMBDA_ACTION = "action"  # moto evaluates lambda:Invoke, not lambda:InvokeFunction
NOT_AN_API = "passrole"  # iam:PassRole is checked inside other APIs; moto never does


@dataclass(frozen=True)
class Case:
    behaviour: str  # the test id, in every model `ids` does not rename it for
    action: str
    resource: str  # str.format template over Pair.values()
    expected: Decision
    probe: Probe | None = None  # the real API call; None = moto cannot express it
    context: Mapping[str, str] = field(default_factory=dict)  # formatted like resource
    offline_because: str = ""  # why there is no moto probe
    # Models in which moto cannot decide the case although the call exists, and why.
    offline_in: Mapping[Model, str] = field(default_factory=dict)
    models: tuple[Model, ...] = ISOLATIONS  # where the case applies
    only_because: str = ""  # why it does not apply to the other model
    ids: Mapping[Model, str] = field(default_factory=dict)  # test id where it differs

    def __post_init__(self) -> None:
        if (self.probe is None) != bool(self.offline_because):
            raise ValueError(f"{self.behaviour}: a probe, or why moto cannot express it")
        if set(self.models) != set(ISOLATIONS) and not self.only_because:
            raise ValueError(f"{self.behaviour}: why it applies to {self.models} only")
        if not set(self.offline_in) | set(self.ids) <= set(self.models):
            raise ValueError(f"{self.behaviour}: offline_in/ids for a model it skips")

    def id(self, model: Model) -> str:
        return self.ids.get(model, self.behaviour)

    def probe_in(self, model: Model) -> Probe | None:
        return None if model in self.offline_in else self.probe

    def moto_gap(self, model: Model) -> str:
        """Why moto does not decide the case in `model` ("" when it does)."""
        return self.offline_in.get(model, self.offline_because)

    def request(self, pair: Pair) -> Request:
        values = pair.values()
        context = {k: v.format(**values) for k, v in self.context.items()}
        return Request(self.action, self.resource.format(**values), context)


@dataclass(frozen=True)
class Outcome:
    case: Case
    request: Request
    moto: Decision | None  # None: not expressible in moto
    offline: Decision

    @property
    def holds(self) -> bool:
        return self.offline == self.case.expected and self.moto in (None, self.case.expected)


def run_case(pair: Pair, case: Case) -> Outcome:
    """The case decided by the offline evaluator on A's deployed documents and, where
    moto can express it in this model, by a real call under moto's enforcement."""
    request = case.request(pair)
    offline = evaluate(list(inline_policies(pair.a.role_name).values()), request)
    probe = case.probe_in(pair.world.model)
    moto = observe(lambda: probe(pair), case.action).decision if probe else None
    return Outcome(case, request, moto, offline)
