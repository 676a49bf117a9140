"""Tenant isolation is proven for the POOL model too (docs/isolation.md §7).

Pool tenants share one bucket (`<prefix>-pool-<account>`, owned by the platform
stack) and own the prefix `tenants/<id>/`. There is no bucket boundary: the role
(prefix-scoped) and the rule (bucket + prefix wildcard) are the whole isolation,
so this module proves both on the REAL synthesized pool template
(`TrainyardTenantPool`, from the session synthesis) deployed into moto's
CloudFormation for `acme` (A), `globex` (B) and `canary` (mutations).

- The role: real S3/IAM/... calls with each deployed role's credentials under
  moto's IAM enforcement, and the offline evaluator on the deployed documents for
  every case. In pool, moto is blind to more than in silo: A and B share a bucket,
  so "may A list B's prefix?" is decided by the `s3:prefix` condition alone, which
  moto ignores; those cases are offline only.
- The rule: moto delivers S3 -> EventBridge -> SQS for real, so the tests put
  objects in the pool bucket and see which tenant's queue (one per tenant here)
  receives the event.

Each check can fail: mutations broaden (and narrow) the canary's deployed role and
rule and show exactly the cases that should flip do flip.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.infra.isolation_support import (
    ACCOUNT,
    Decision,
    DeployedTenant,
    Request,
    create_bucket,
    create_queue,
    deploy_tenant,
    drain,
    evaluate,
    inline_policies,
    observe,
    policy_replaced,
)
from tests.infra.synth_support import Synth

pytestmark = pytest.mark.infra

DOC = Path(__file__).resolve().parents[2] / "docs" / "isolation.md"
POOL_STACK = "TrainyardTenantPool"
STEP_CODE_KEY = "code/pipeline/v1/preprocess.py"
TEMPLATE_KEY = "templates/tenant-stack-pool.template.json"
POOL_LOG_KEY = "access-logs/pool/2030-01-01-00-00-00-LOG"  # every pool tenant's keys
UPLOAD = "data/train.csv"  # relative to a tenant's prefix, as in a silo bucket
MODEL = "artifacts/run-1/model/model.tar.gz"
TENANTS = ("acme", "globex", "canary")
# A tenant id that extends another one: `tenants/<id>*` (no slash) would reach it.
SIBLING_SUFFIX = "-corp"


# --------------------------------------------------------------------------- #
# The world: the pool bucket, three pool tenants from the real template
# --------------------------------------------------------------------------- #


@dataclass
class PoolWorld:
    synth: Synth
    tenants: dict[str, DeployedTenant]
    pool_bucket: str
    platform_bucket: str
    queues: dict[str, str]  # tenant id -> url of the queue its rule targets

    @property
    def region(self) -> str:
        return self.synth.settings.region

    def tenant_key(self, tenant_id: str, relative: str) -> str:
        return self.synth.names.pool_tenant_prefix(tenant_id) + relative


@dataclass
class Pair:
    """Tenant A (whose credentials make the calls) and tenant B (the victim)."""

    world: PoolWorld
    a: DeployedTenant
    b: DeployedTenant
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.a.client(service)
        return self._clients[service]

    def values(self) -> dict[str, str]:
        names = self.world.synth.names
        a, b = self.a.tenant_id, self.b.tenant_id
        return {
            "account": ACCOUNT,
            "region": self.world.region,
            "pool": self.world.pool_bucket,
            "a": names.pool_tenant_prefix(a),  # tenants/<a>/
            "b": names.pool_tenant_prefix(b),
            "a_sibling": names.pool_tenant_prefix(a + SIBLING_SUFFIX),
            "a_partial": names.pool_tenant_prefix(a).rstrip("/"),  # tenants/<a>
            "b_id": b,
            "a_role": self.a.role_name,
            "b_role": self.b.role_name,
            "a_role_arn": self.a.role_arn,
            "b_role_arn": self.b.role_arn,
            "b_group": self.b.outputs["ModelPackageGroupName"],
            "b_rule": names.tenant_rule(b),
            "b_stack": self.b.stack_name,
            "b_queue_url": self.world.queues[b],
            "b_queue": self.world.queues[b].rsplit("/", 1)[1],
            "platform": self.world.platform_bucket,
            "pipeline": names.pipeline_name,
            "tenants_table": names.tenants_table,
        }


@pytest.fixture(scope="module")
def pool(synth: Synth) -> Iterator[PoolWorld]:
    from moto import mock_aws

    settings, names = synth.settings, synth.names
    region = settings.region
    plan = next(p for p, cfg in settings.plans.items() if cfg.isolation == "pool")
    with pytest.MonkeyPatch.context() as env:
        # The embedded stack points boto3 elsewhere; these calls must reach mock_aws.
        for key in [k for k in os.environ if k.startswith("AWS_ENDPOINT_URL")]:
            env.delenv(key)
        with mock_aws():
            platform, pool_bucket = names.platform_bucket(ACCOUNT), names.pool_bucket(ACCOUNT)
            create_bucket(platform, region=region)
            create_bucket(pool_bucket, region=region)
            # One queue per tenant (in AWS it is the plan's queue, shared): the queue
            # that receives an event names the rule that matched it.
            queues = {t: create_queue(f"isolation-intake-{t}", region=region) for t in TENANTS}
            tenants = {
                t: deploy_tenant(
                    synth.templates[POOL_STACK], t, plan=plan, queue_arn=queues[t][1], region=region
                )
                for t in TENANTS
            }
            s3 = boto3.client("s3", region_name=region)
            for key in (STEP_CODE_KEY, TEMPLATE_KEY, POOL_LOG_KEY):
                s3.put_object(Bucket=platform, Key=key, Body=b"platform")
            for t in (*TENANTS, "acme" + SIBLING_SUFFIX):
                prefix = names.pool_tenant_prefix(t)
                s3.put_object(Bucket=pool_bucket, Key=prefix + UPLOAD, Body=b"x,y\n1,2\n")
                s3.put_object(Bucket=pool_bucket, Key=prefix + MODEL, Body=b"model")
            # Notifications on after seeding, so the queues start empty.
            s3.put_bucket_notification_configuration(
                Bucket=pool_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
            yield PoolWorld(
                synth, tenants, pool_bucket, platform, {t: q[0] for t, q in queues.items()}
            )


def _pair(world: PoolWorld, a: str, b: str) -> Pair:
    return Pair(world, world.tenants[a], world.tenants[b])


# --------------------------------------------------------------------------- #
# The cases: what pool tenant A's role must and must not reach
# --------------------------------------------------------------------------- #

Probe = Callable[[Pair], Any]


@dataclass(frozen=True)
class Case:
    behaviour: str
    action: str
    resource: str  # str.format template over Pair.values()
    expected: Decision
    probe: Probe | None = None  # the real API call; None = moto cannot express it
    context: Mapping[str, str] = field(default_factory=dict)  # formatted like resource
    offline_because: str = ""

    def request(self, pair: Pair) -> Request:
        values = pair.values()
        context = {k: v.format(**values) for k, v in self.context.items()}
        return Request(self.action, self.resource.format(**values), context)


def _s3(method: str, **kwargs: str) -> Probe:
    def probe(p: Pair) -> Any:
        args = {k: v.format(**p.values()) for k, v in kwargs.items()}
        return getattr(p.client("s3"), method)(**args)

    return probe


def _authorized_if_unimplemented(call: Callable[[], Any]) -> None:
    """moto authorizes before dispatching, then raises NotImplementedError for an
    API it lacks (DeleteModelPackageGroup): reaching that point means "allowed"."""
    with contextlib.suppress(NotImplementedError):
        call()


def _list(prefix: str) -> Probe:
    return _s3("list_objects_v2", Bucket="{pool}", Prefix=prefix)


# Keys of docs/isolation.md §3 (same gaps as silo).
MOTO_IGNORES_CONDITIONS = "condition"
NOT_AN_API = "passrole"

POOL = "arn:aws:s3:::{pool}"
CASES: tuple[Case, ...] = (
    # --- A's own prefix: read data and artifacts, list them, write artifacts only
    Case(
        "reads_own_uploads",
        "s3:GetObject",
        POOL + "/{a}" + UPLOAD,
        "allow",
        _s3("get_object", Bucket="{pool}", Key="{a}" + UPLOAD),
    ),
    Case(
        "reads_own_artifacts",
        "s3:GetObject",
        POOL + "/{a}" + MODEL,
        "allow",
        _s3("get_object", Bucket="{pool}", Key="{a}" + MODEL),
    ),
    Case(
        "lists_own_upload_prefix",
        "s3:ListBucket",
        POOL,
        "allow",
        _list("{a}data/"),
        context={"s3:prefix": "{a}data/"},
    ),
    Case(
        "lists_own_artifacts_prefix",
        "s3:ListBucket",
        POOL,
        "allow",
        _list("{a}artifacts/run-1/"),
        context={"s3:prefix": "{a}artifacts/run-1/"},
    ),
    Case(
        "writes_own_artifacts",
        "s3:PutObject",
        POOL + "/{a}artifacts/run-1/evaluation/evaluation.json",
        "allow",
        _s3(
            "put_object",
            Bucket="{pool}",
            Key="{a}artifacts/run-1/evaluation/evaluation.json",
            Body="{{}}",
        ),
    ),
    Case(
        "cannot_write_own_uploads",
        "s3:PutObject",
        POOL + "/{a}data/injected.csv",
        "deny",
        _s3("put_object", Bucket="{pool}", Key="{a}data/injected.csv", Body="1"),
    ),
    Case(
        "cannot_delete_own_uploads",
        "s3:DeleteObject",
        POOL + "/{a}" + UPLOAD,
        "deny",
        _s3("delete_object", Bucket="{pool}", Key="{a}" + UPLOAD),
    ),
    # Like the root of a silo bucket: no job lists its whole prefix (inputs and
    # outputs are data/... and artifacts/...), so the role does not allow it.
    Case(
        "cannot_list_own_tenant_root",
        "s3:ListBucket",
        POOL,
        "deny",
        context={"s3:prefix": "{a}"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    # --- the rest of the pool bucket: nothing
    Case(
        "cannot_list_pool_bucket_root",
        "s3:ListBucket",
        POOL,
        "deny",
        offline_because=MOTO_IGNORES_CONDITIONS,  # no Prefix: AWS sends no s3:prefix
    ),
    Case(
        "cannot_list_all_tenants",
        "s3:ListBucket",
        POOL,
        "deny",
        context={"s3:prefix": "tenants/"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_list_other_tenant_prefix",
        "s3:ListBucket",
        POOL,
        "deny",
        context={"s3:prefix": "{b}data/"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    # `tenants/acme` (no slash) would list tenants/acme-corp/ as well.
    Case(
        "cannot_list_by_partial_tenant_id",
        "s3:ListBucket",
        POOL,
        "deny",
        context={"s3:prefix": "{a_partial}"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_read_other_tenant_uploads",
        "s3:GetObject",
        POOL + "/{b}" + UPLOAD,
        "deny",
        _s3("get_object", Bucket="{pool}", Key="{b}" + UPLOAD),
    ),
    Case(
        "cannot_read_other_tenant_artifacts",
        "s3:GetObject",
        POOL + "/{b}" + MODEL,
        "deny",
        _s3("get_object", Bucket="{pool}", Key="{b}" + MODEL),
    ),
    Case(
        "cannot_read_tenant_whose_id_extends_own",
        "s3:GetObject",
        POOL + "/{a_sibling}" + UPLOAD,
        "deny",
        _s3("get_object", Bucket="{pool}", Key="{a_sibling}" + UPLOAD),
    ),
    # B's rule would start a run of B's on the injected data.
    Case(
        "cannot_write_other_tenant_uploads",
        "s3:PutObject",
        POOL + "/{b}data/poison.csv",
        "deny",
        _s3("put_object", Bucket="{pool}", Key="{b}data/poison.csv", Body="1"),
    ),
    Case(
        "cannot_write_other_tenant_artifacts",
        "s3:PutObject",
        POOL + "/{b}" + MODEL,
        "deny",
        _s3("put_object", Bucket="{pool}", Key="{b}" + MODEL, Body="poisoned"),
    ),
    Case(
        "cannot_delete_other_tenant_data",
        "s3:DeleteObject",
        POOL + "/{b}" + UPLOAD,
        "deny",
        _s3("delete_object", Bucket="{pool}", Key="{b}" + UPLOAD),
    ),
    Case(
        "cannot_write_outside_tenant_prefixes",
        "s3:PutObject",
        POOL + "/shared.csv",
        "deny",
        _s3("put_object", Bucket="{pool}", Key="shared.csv", Body="1"),
    ),
    # --- the pool bucket itself is the platform's (and every pool tenant's)
    Case(
        "gets_pool_bucket_location",
        "s3:GetBucketLocation",
        POOL,
        "allow",
        _s3("get_bucket_location", Bucket="{pool}"),
    ),
    Case(
        "cannot_change_pool_bucket_policy",
        "s3:PutBucketPolicy",
        POOL,
        "deny",
        _s3("put_bucket_policy", Bucket="{pool}", Policy="{{}}"),
    ),
    # Turning EventBridge delivery off would stop every pool tenant's runs.
    Case(
        "cannot_change_pool_bucket_notifications",
        "s3:PutBucketNotification",
        POOL,
        "deny",
        lambda p: p.client("s3").put_bucket_notification_configuration(
            Bucket=p.world.pool_bucket, NotificationConfiguration={}
        ),
    ),
    Case(
        "cannot_delete_pool_bucket",
        "s3:DeleteBucket",
        POOL,
        "deny",
        _s3("delete_bucket", Bucket="{pool}"),
    ),
    Case(
        "cannot_enumerate_buckets",
        "s3:ListAllMyBuckets",
        "*",
        "deny",
        lambda p: p.client("s3").list_buckets(),
    ),
    # --- the platform bucket: the step code under code/, read-only; nothing else
    Case(
        "reads_pipeline_step_code",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/" + STEP_CODE_KEY,
        "allow",
        _s3("get_object", Bucket="{platform}", Key=STEP_CODE_KEY),
    ),
    Case(
        "lists_pipeline_step_code",
        "s3:ListBucket",
        "arn:aws:s3:::{platform}",
        "allow",
        _s3("list_objects_v2", Bucket="{platform}", Prefix=STEP_CODE_KEY),
        context={"s3:prefix": STEP_CODE_KEY},
    ),
    Case(
        "cannot_list_platform_bucket_outside_code",
        "s3:ListBucket",
        "arn:aws:s3:::{platform}",
        "deny",
        context={"s3:prefix": "access-logs/"},
        offline_because=MOTO_IGNORES_CONDITIONS,
    ),
    Case(
        "cannot_overwrite_pipeline_step_code",
        "s3:PutObject",
        "arn:aws:s3:::{platform}/" + STEP_CODE_KEY,
        "deny",
        _s3("put_object", Bucket="{platform}", Key=STEP_CODE_KEY, Body="import os"),
    ),
    Case(
        "cannot_read_tenant_templates",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/" + TEMPLATE_KEY,
        "deny",
        _s3("get_object", Bucket="{platform}", Key=TEMPLATE_KEY),
    ),
    Case(
        "cannot_read_pool_access_logs",
        "s3:GetObject",
        "arn:aws:s3:::{platform}/" + POOL_LOG_KEY,
        "deny",
        _s3("get_object", Bucket="{platform}", Key=POOL_LOG_KEY),
    ),
    # --- B's role, rule, model package group and stack; the control plane
    Case(
        "cannot_assume_other_tenant_role",
        "sts:AssumeRole",
        "{b_role_arn}",
        "deny",
        lambda p: p.client("sts").assume_role(RoleArn=p.b.role_arn, RoleSessionName="steal"),
    ),
    Case(
        "cannot_pass_other_tenant_role",
        "iam:PassRole",
        "{b_role_arn}",
        "deny",
        context={"iam:PassedToService": "sagemaker.amazonaws.com"},
        offline_because=NOT_AN_API,
    ),
    Case(
        "cannot_change_other_tenant_role",
        "iam:PutRolePolicy",
        "{b_role_arn}",
        "deny",
        lambda p: p.client("iam").put_role_policy(
            RoleName=p.b.role_name,
            PolicyName="open",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        ),
    ),
    Case(
        "cannot_change_own_permissions",
        "iam:PutRolePolicy",
        "{a_role_arn}",
        "deny",
        lambda p: p.client("iam").put_role_policy(
            RoleName=p.a.role_name,
            PolicyName="escalate",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        ),
    ),
    # A rule matching tenants/* would deliver B's uploads into runs of A.
    Case(
        "cannot_change_other_tenant_rule",
        "events:PutRule",
        "arn:aws:events:{region}:{account}:rule/{b_rule}",
        "deny",
        lambda p: p.client("events").put_rule(
            Name=p.values()["b_rule"], EventPattern=json.dumps({"source": ["aws.s3"]})
        ),
    ),
    Case(
        "cannot_retarget_other_tenant_rule",
        "events:PutTargets",
        "arn:aws:events:{region}:{account}:rule/{b_rule}",
        "deny",
        lambda p: p.client("events").put_targets(
            Rule=p.values()["b_rule"],
            Targets=[{"Id": "steal", "Arn": p.a.outputs["UploadRuleArn"]}],
        ),
    ),
    Case(
        "cannot_delete_other_tenant_rule",
        "events:DeleteRule",
        "arn:aws:events:{region}:{account}:rule/{b_rule}",
        "deny",
        lambda p: p.client("events").delete_rule(Name=p.values()["b_rule"]),
    ),
    Case(
        "cannot_register_models_in_other_tenant_group",
        "sagemaker:CreateModelPackage",
        "arn:aws:sagemaker:{region}:{account}:model-package/{b_group}/1",
        "deny",
        lambda p: p.client("sagemaker").create_model_package(
            ModelPackageGroupName=p.values()["b_group"]
        ),
    ),
    Case(
        "cannot_delete_other_tenant_model_group",
        "sagemaker:DeleteModelPackageGroup",
        "arn:aws:sagemaker:{region}:{account}:model-package-group/{b_group}",
        "deny",
        lambda p: _authorized_if_unimplemented(
            lambda: p.client("sagemaker").delete_model_package_group(
                ModelPackageGroupName=p.values()["b_group"]
            )
        ),
    ),
    Case(
        "cannot_start_pipeline_executions",
        "sagemaker:StartPipelineExecution",
        "arn:aws:sagemaker:{region}:{account}:pipeline/{pipeline}",
        "deny",
        lambda p: p.client("sagemaker").start_pipeline_execution(
            PipelineName=p.values()["pipeline"]
        ),
    ),
    Case(
        "cannot_delete_tenant_stacks",
        "cloudformation:DeleteStack",
        "arn:aws:cloudformation:{region}:{account}:stack/{b_stack}/*",
        "deny",
        lambda p: p.client("cloudformation").delete_stack(StackName=p.b.stack_name),
    ),
    Case(
        "cannot_read_tenant_registry",
        "dynamodb:GetItem",
        "arn:aws:dynamodb:{region}:{account}:table/{tenants_table}",
        "deny",
        lambda p: p.client("dynamodb").get_item(
            TableName=p.values()["tenants_table"], Key={"tenantId": {"S": p.b.tenant_id}}
        ),
    ),
    Case(
        "cannot_forge_upload_events",
        "sqs:SendMessage",
        "arn:aws:sqs:{region}:{account}:{b_queue}",
        "deny",
        lambda p: p.client("sqs").send_message(
            QueueUrl=p.values()["b_queue_url"], MessageBody="{}"
        ),
    ),
)
CASE_BY_NAME = {case.behaviour: case for case in CASES}
assert len(CASE_BY_NAME) == len(CASES)


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
    request = case.request(pair)
    offline = evaluate(list(inline_policies(pair.a.role_name).values()), request)
    moto = observe(lambda: case.probe(pair), case.action).decision if case.probe else None
    return Outcome(case, request, moto, offline)


def broken(pair: Pair) -> set[str]:
    return {c.behaviour for c in CASES if not run_case(pair, c).holds}


# --------------------------------------------------------------------------- #
# The deployed pool role, in moto and offline
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("a", "b"), [("acme", "globex"), ("globex", "acme")])
@pytest.mark.parametrize("behaviour", list(CASE_BY_NAME))
def test_pool_tenant_role(pool: PoolWorld, a: str, b: str, behaviour: str) -> None:
    outcome = run_case(_pair(pool, a, b), CASE_BY_NAME[behaviour])
    assert outcome.offline == outcome.case.expected, outcome
    if outcome.case.probe is not None:
        assert outcome.moto == outcome.case.expected, outcome


def test_the_deployed_pool_tenants_are_where_wiring_says(pool: PoolWorld) -> None:
    """The stacks created the template's role (path = PassRole scope) and point at
    the pool bucket and the prefix `Names.tenant_location` gives the control plane."""
    names = pool.synth.names
    for tenant in pool.tenants.values():
        t = tenant.tenant_id
        bucket, root, data = names.tenant_location("pool", t, ACCOUNT)
        assert (tenant.bucket, tenant.outputs["DataPrefix"]) == (bucket, data)
        assert bucket == pool.pool_bucket and root == f"tenants/{t}/"
        assert tenant.outputs["OutputUri"] == f"s3://{bucket}/{names.pool_output_prefix(t)}"
        assert tenant.role_arn == (
            f"arn:aws:iam::{ACCOUNT}:role{names.tenant_role_path}{names.tenant_role(t)}"
        )
        assert list(inline_policies(tenant.role_name)) == ["TenantJobAccess"]


def test_moto_cannot_tell_tenants_apart_when_listing_the_pool_bucket(pool: PoolWorld) -> None:
    """Why the pool listing cases are offline: with the s3:prefix condition ignored,
    moto lets A list B's prefix (and the whole bucket); AWS and the offline evaluator
    deny. If moto learns conditions, give these cases moto probes."""
    pair = _pair(pool, "acme", "globex")
    case = CASE_BY_NAME["cannot_list_other_tenant_prefix"]
    seen = observe(lambda: _list("{b}data/")(pair), case.action)
    assert seen.decision == "allow"
    assert run_case(pair, case).offline == "deny"


def test_pool_role_differs_from_the_silo_role_only_in_its_s3_location(synth: Synth) -> None:
    """Logs, metrics, ECR and the platform code statements are the silo role's
    byte for byte, so the silo cases for them (test_isolation.py) hold for pool."""
    by_location = {"ListOwnPrefixes", "BucketLocation", "ReadOwnData", "WriteOwnArtifacts"}

    def statements(template: Mapping[str, Any]) -> dict[str, Any]:
        (policy,) = template["Resources"]["JobRole"]["Properties"]["Policies"]
        return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    silo, pooled = statements(synth.tenant_json), statements(synth.templates[POOL_STACK])
    assert set(silo) == set(pooled) and by_location < set(silo)
    assert {sid: silo[sid] for sid in set(silo) - by_location} == {
        sid: pooled[sid] for sid in set(pooled) - by_location
    }
    for sid in by_location:
        assert {k: v for k, v in silo[sid].items() if k not in ("Resource", "Condition")} == {
            k: v for k, v in pooled[sid].items() if k not in ("Resource", "Condition")
        }, sid


# --------------------------------------------------------------------------- #
# Mutations: every case can fail
# --------------------------------------------------------------------------- #


def _statement(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in doc["Statement"] if s["Sid"] == sid)


def _pool_arn(doc: dict[str, Any]) -> str:
    return _statement(doc, "BucketLocation")["Resource"]


def _reads_every_tenant(doc: dict[str, Any]) -> None:
    pool_arn = _pool_arn(doc)
    _statement(doc, "ReadOwnData")["Resource"] = [
        f"{pool_arn}/tenants/*/data/*",
        f"{pool_arn}/tenants/*/artifacts/*",
    ]


def _prefix_without_slash(doc: dict[str, Any]) -> None:
    # The classic pool bug: "tenants/<id>*" also covers tenants/<id>-corp/.
    statement = _statement(doc, "ReadOwnData")
    statement["Resource"] = [r.replace("/data/*", "*") for r in statement["Resource"]]


def _writes_whole_tenant_prefix(doc: dict[str, Any]) -> None:
    statement = _statement(doc, "WriteOwnArtifacts")
    statement["Resource"] = statement["Resource"].replace("/artifacts/*", "/*")


def _writes_whole_pool(doc: dict[str, Any]) -> None:
    _statement(doc, "WriteOwnArtifacts")["Resource"] = f"{_pool_arn(doc)}/*"


def _lists_without_condition(doc: dict[str, Any]) -> None:
    del _statement(doc, "ListOwnPrefixes")["Condition"]


def _lists_every_tenant(doc: dict[str, Any]) -> None:
    _statement(doc, "ListOwnPrefixes")["Condition"] = {"StringLike": {"s3:prefix": "tenants/*"}}


def _lists_by_partial_id(doc: dict[str, Any]) -> None:
    condition = _statement(doc, "ListOwnPrefixes")["Condition"]["StringLike"]
    own = condition["s3:prefix"][0].split("/")[1]  # tenants/<id>/data/* -> <id>
    condition["s3:prefix"] = f"tenants/{own}*"


def _reads_whole_platform_bucket(doc: dict[str, Any]) -> None:
    statement = _statement(doc, "ReadPipelineCode")
    statement["Resource"] = statement["Resource"].replace("/code/*", "/*")


def _no_artifact_writes(doc: dict[str, Any]) -> None:
    doc["Statement"].remove(_statement(doc, "WriteOwnArtifacts"))


def _pool_bucket_admin(doc: dict[str, Any]) -> None:
    doc["Statement"].append(
        {"Effect": "Allow", "Action": "s3:PutBucket*", "Resource": _pool_arn(doc)}
    )


def _sagemaker_star(doc: dict[str, Any]) -> None:
    doc["Statement"].append({"Effect": "Allow", "Action": "sagemaker:*", "Resource": "*"})


def _pass_tenant_roles(doc: dict[str, Any]) -> None:
    doc["Statement"].append(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/*",
        }
    )


LISTINGS = {
    "cannot_list_own_tenant_root",
    "cannot_list_all_tenants",
    "cannot_list_other_tenant_prefix",
    "cannot_list_by_partial_tenant_id",
}
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], set[str]]] = {
    "reads_every_tenant_prefix": (
        _reads_every_tenant,
        {
            "cannot_read_other_tenant_uploads",
            "cannot_read_other_tenant_artifacts",
            "cannot_read_tenant_whose_id_extends_own",
        },
    ),
    "tenant_prefix_without_slash": (
        _prefix_without_slash,
        {"cannot_read_tenant_whose_id_extends_own"},
    ),
    "writes_whole_tenant_prefix": (_writes_whole_tenant_prefix, {"cannot_write_own_uploads"}),
    "writes_whole_pool_bucket": (
        _writes_whole_pool,
        {
            "cannot_write_own_uploads",
            "cannot_write_other_tenant_uploads",
            "cannot_write_other_tenant_artifacts",
            "cannot_write_outside_tenant_prefixes",
        },
    ),
    "lists_without_prefix_condition": (
        _lists_without_condition,
        LISTINGS | {"cannot_list_pool_bucket_root"},
    ),
    "lists_every_tenant_prefix": (_lists_every_tenant, LISTINGS),
    "lists_by_partial_tenant_id": (
        _lists_by_partial_id,
        {"cannot_list_own_tenant_root", "cannot_list_by_partial_tenant_id"},
    ),
    "reads_whole_platform_bucket": (
        _reads_whole_platform_bucket,
        {"cannot_read_tenant_templates", "cannot_read_pool_access_logs"},
    ),
    "cannot_write_artifacts_any_more": (_no_artifact_writes, {"writes_own_artifacts"}),
    "configures_the_pool_bucket": (
        _pool_bucket_admin,
        {"cannot_change_pool_bucket_policy", "cannot_change_pool_bucket_notifications"},
    ),
    "sagemaker_on_everything": (
        _sagemaker_star,
        {
            "cannot_register_models_in_other_tenant_group",
            "cannot_delete_other_tenant_model_group",
            "cannot_start_pipeline_executions",
        },
    ),
    "passes_tenant_roles": (_pass_tenant_roles, {"cannot_pass_other_tenant_role"}),
}


def test_cases_all_hold_for_the_canary_before_mutation(pool: PoolWorld) -> None:
    assert broken(_pair(pool, "canary", "globex")) == set()


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_changed_pool_policy_breaks_exactly_the_cases_it_should(
    pool: PoolWorld, mutation: str
) -> None:
    change, expected_broken = MUTATIONS[mutation]
    pair = _pair(pool, "canary", "globex")
    documents = copy.deepcopy(inline_policies(pair.a.role_name))
    change(documents["TenantJobAccess"])
    try:
        with policy_replaced(pair.a.role_name, documents):
            assert broken(pair) == expected_broken
    finally:
        _restore_pool_bucket(pool)


def _restore_pool_bucket(world: PoolWorld) -> None:
    """A broadened role's probes really run: undo what they may have done to the
    shared bucket (policy replaced, EventBridge delivery switched off)."""
    s3 = boto3.client("s3", region_name=world.region)
    s3.delete_bucket_policy(Bucket=world.pool_bucket)
    s3.put_bucket_notification_configuration(
        Bucket=world.pool_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )


def test_broadened_pool_reads_are_caught_by_moto_itself(pool: PoolWorld) -> None:
    """The moto half alone catches it: a real GetObject of B's upload, signed by the
    broadened canary role, succeeds; with the deployed policy it is denied."""
    pair = _pair(pool, "canary", "globex")
    documents = copy.deepcopy(inline_policies(pair.a.role_name))
    _reads_every_tenant(documents["TenantJobAccess"])
    case = CASE_BY_NAME["cannot_read_other_tenant_uploads"]
    assert case.probe is not None
    with policy_replaced(pair.a.role_name, documents):
        assert observe(lambda: case.probe(pair), case.action).decision == "allow"
    assert observe(lambda: case.probe(pair), case.action).decision == "deny"


# --------------------------------------------------------------------------- #
# The rules: S3 -> EventBridge -> queue, for real in moto
# --------------------------------------------------------------------------- #


def _deliveries(world: PoolWorld, bucket: str, key: str) -> set[str]:
    """Put one object (platform credentials, no enforcement), return the tenants
    whose rule delivered its event (their queues)."""
    for url in world.queues.values():
        drain(url, region=world.region)  # earlier tests' writes (mutations) may be queued
    boto3.client("s3", region_name=world.region).put_object(Bucket=bucket, Key=key, Body=b"1")
    hits = set()
    for tenant, url in world.queues.items():
        for event in drain(url, region=world.region):
            assert event["detail"]["object"]["key"] == key, event
            hits.add(tenant)
    return hits


RULE_CASES: dict[str, tuple[str, set[str]]] = {
    # key (in the pool bucket unless noted) -> tenants whose rule fires
    "own_upload_reaches_only_own_rule": ("tenants/acme/data/new.csv", {"acme"}),
    "other_upload_reaches_only_its_rule": ("tenants/globex/data/new.csv", {"globex"}),
    "nested_upload_still_own": ("tenants/acme/data/2030/01/new.csv", {"acme"}),
    "artifact_triggers_nothing": ("tenants/acme/artifacts/run-1/out.csv", set()),
    "not_csv_triggers_nothing": ("tenants/acme/data/new.json", set()),
    "sibling_tenant_id_not_matched": (f"tenants/acme{SIBLING_SUFFIX}/data/new.csv", set()),
    "outside_tenants_triggers_nothing": ("data/new.csv", set()),
}


@pytest.mark.parametrize("name", list(RULE_CASES))
def test_pool_rules_fire_only_for_their_own_tenants_uploads(pool: PoolWorld, name: str) -> None:
    key, expected = RULE_CASES[name]
    assert _deliveries(pool, pool.pool_bucket, key) == expected


def test_rules_match_the_pool_bucket_only(pool: PoolWorld) -> None:
    """The same key in another bucket (e.g. a silo bucket) fires no pool rule."""
    other = "trainyard-elsewhere-" + ACCOUNT
    create_bucket(other, region=pool.region, eventbridge=True)
    assert _deliveries(pool, other, "tenants/acme/data/new.csv") == set()


def test_what_a_pool_role_may_write_starts_no_run(pool: PoolWorld) -> None:
    """A job can only write artifacts/ (proven above); those writes, made with the
    role's own credentials, start no run of any tenant."""
    a = pool.tenants["acme"]
    for url in pool.queues.values():
        drain(url, region=pool.region)
    key = pool.tenant_key("acme", "artifacts/run-9/data/train.csv")
    seen = observe(
        lambda: a.client("s3").put_object(Bucket=pool.pool_bucket, Key=key, Body=b"1"),
        "s3:PutObject",
    )
    assert seen.decision == "allow"
    assert all(drain(url, region=pool.region) == [] for url in pool.queues.values())


def test_a_broadened_rule_is_caught(pool: PoolWorld) -> None:
    """A rule matching tenants/*/data/*.csv (the canary's, changed) receives globex's
    uploads: the rule checks above can fail."""
    canary = pool.tenants["canary"]
    events = boto3.client("events", region_name=pool.region)
    name = pool.synth.names.tenant_rule("canary")
    original = events.describe_rule(Name=name)["EventPattern"]
    pattern = json.loads(original)
    pattern["detail"]["object"]["key"] = [{"wildcard": "tenants/*/data/*.csv"}]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    try:
        assert _deliveries(pool, pool.pool_bucket, "tenants/globex/data/new.csv") == {
            "globex",
            "canary",
        }
    finally:
        events.put_rule(Name=name, EventPattern=original)
    assert canary.outputs["UploadRuleArn"].endswith(name)
    assert _deliveries(pool, pool.pool_bucket, "tenants/globex/data/new.csv") == {"globex"}


# --------------------------------------------------------------------------- #
# The documented table is the proven one
# --------------------------------------------------------------------------- #


def proven_pool_table(world: PoolWorld) -> str:
    pair = _pair(world, "acme", "globex")
    rows = [
        "| case (test id) | principal | action | resource | expected | moto | offline |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        outcome = run_case(pair, case)
        context = "".join(f" `{k}={v}`" for k, v in outcome.request.context.items())
        moto = outcome.moto or f"n/a ({case.offline_because})"
        rows.append(
            f"| {case.behaviour} | `{pair.a.role_name}` | `{case.action}`{context} "
            f"| `{outcome.request.resource}` | {case.expected} | {moto} | {outcome.offline} |"
        )
    return "\n".join(rows)


def test_docs_show_the_proven_pool_cases(pool: PoolWorld) -> None:
    table = proven_pool_table(pool)
    assert table in DOC.read_text(), "docs/isolation.md is stale; the pool table is:\n" + table
