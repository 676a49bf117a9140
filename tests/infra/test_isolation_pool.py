"""Tenant isolation is proven for the POOL model too (docs/isolation.md §7).

Pool tenants share one bucket (`<prefix>-pool-<account>`, owned by the platform
stack) and own the prefix `tenants/<id>/`. There is no bucket boundary: the role
(prefix-scoped) and the rule (bucket + key prefix) are the whole isolation,
so this module proves both on the REAL synthesized pool template
(`TrainyardTenantPool`, from the session synthesis) deployed into moto's
CloudFormation for `acme` (A), `globex` (B) and `canary` (mutations).

- The role: the silo proof's case table, world and checks (isolation_table,
  isolation_cases, isolation_checks) run for pool: real S3/IAM/... calls with each
  deployed role's credentials under moto's IAM enforcement, and the offline evaluator
  on the deployed documents for every case. In pool, moto is blind to more than in
  silo: A and B share a bucket, so "may A list B's prefix?" is decided by the
  `s3:prefix` condition alone, which moto ignores; those cases are offline only.
- The rule: moto delivers S3 -> EventBridge -> SQS for real, so the tests put
  objects in the pool bucket and see which tenant's queue (one per tenant here)
  receives the event.

Each check can fail: mutations broaden (and narrow) the canary's deployed role and
rule and show exactly the cases that should flip do flip.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3
import pytest

from infra.tenant_template import TENANT_STACK_IDS
from tests.infra import isolation_checks as checks
from tests.infra.isolation_cases import SIBLING_SUFFIX, World, pair, world_fixture
from tests.infra.isolation_support import ACCOUNT, create_bucket, drain, inline_policies, observe
from tests.infra.isolation_table import cases
from tests.infra.synth_support import Synth

pytestmark = pytest.mark.infra
pool = world_fixture("pool", name="pool")


@pytest.mark.parametrize(("behaviour", "a", "b"), checks.case_params("pool"))
def test_pool_tenant_role(pool: World, behaviour: str, a: str, b: str) -> None:
    """The role, in moto and offline: the shared case table, run for pool."""
    checks.check_case(pool, a, b, behaviour)


def test_the_deployed_pool_tenants_are_where_wiring_says(pool: World) -> None:
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


def test_moto_cannot_tell_tenants_apart_when_listing_the_pool_bucket(pool: World) -> None:
    """Why the pool listing cases are offline: with the s3:prefix condition ignored,
    moto lets A list B's prefix (and the whole bucket); AWS and the offline evaluator
    deny. If moto learns conditions, give these cases moto probes."""
    p = pair(pool, "acme", "globex")
    listing = cases("pool")["cannot_list_other_tenant_prefix"].probe
    assert listing is not None
    checks.check_moto_blind(p, "cannot_list_other_tenant_prefix", lambda: listing(p))


def test_pool_role_differs_from_the_silo_role_only_in_its_s3_location(synth: Synth) -> None:
    """Logs, metrics, ECR and the platform code statements are the silo role's
    byte for byte (the cases for them run in both models, and prove the same)."""
    by_location = {"ListOwnPrefixes", "BucketLocation", "ReadOwnData", "WriteOwnArtifacts"}

    def statements(template: Mapping[str, Any]) -> dict[str, Any]:
        (policy,) = template["Resources"]["JobRole"]["Properties"]["Policies"]
        return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    silo, pooled = (
        statements(synth.tenant_json),
        statements(synth.templates[TENANT_STACK_IDS["pool"]]),
    )
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


def test_cases_all_hold_for_the_canary_before_mutation(pool: World) -> None:
    checks.check_canary_holds(pool)


@pytest.mark.parametrize("mutation", checks.mutations("pool"))
def test_a_changed_pool_policy_breaks_exactly_the_cases_it_should(
    pool: World, mutation: str
) -> None:
    checks.check_mutation(pool, mutation)


def test_broadened_pool_reads_are_caught_by_moto_itself(pool: World) -> None:
    checks.check_moto_catches(pool, "reads_every_tenant_prefix")


# --------------------------------------------------------------------------- #
# The rules: S3 -> EventBridge -> queue, for real in moto
# --------------------------------------------------------------------------- #


def _deliveries(world: World, bucket: str, key: str) -> set[str]:
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
    # Every object under the data prefix reaches the rule: intake decides what
    # trains (*.csv, any case) and shows the rest on the tenant (ignoredUploads).
    "upper_case_csv_reaches_own_rule": ("tenants/acme/data/train.CSV", {"acme"}),
    "not_csv_reaches_own_rule_too": ("tenants/acme/data/customer-list.xlsx", {"acme"}),
    "sibling_tenant_id_not_matched": (f"tenants/acme{SIBLING_SUFFIX}/data/new.csv", set()),
    "outside_tenants_triggers_nothing": ("data/new.csv", set()),
}


@pytest.mark.parametrize("name", list(RULE_CASES))
def test_pool_rules_fire_only_for_their_own_tenants_uploads(pool: World, name: str) -> None:
    key, expected = RULE_CASES[name]
    assert _deliveries(pool, pool.pool_bucket, key) == expected


def test_rules_match_the_pool_bucket_only(pool: World) -> None:
    """The same key in another bucket (e.g. a silo bucket) fires no pool rule."""
    other = "trainyard-elsewhere-" + ACCOUNT
    create_bucket(other, region=pool.region, eventbridge=True)
    assert _deliveries(pool, other, "tenants/acme/data/new.csv") == set()


def test_what_a_pool_role_may_write_starts_no_run(pool: World) -> None:
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


def test_a_broadened_rule_is_caught(pool: World) -> None:
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


def test_docs_show_the_proven_pool_cases(pool: World) -> None:
    checks.check_docs_table(pool)
