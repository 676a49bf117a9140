"""The checks both isolation proofs run on their world (docs/isolation.md §3, §7.3).

- `check_case`: one case of the table, offline and (where moto can express it) with a
  real call signed by A's deployed role.
- `check_moto_blind`: a gap of moto's that makes a case offline only, pinned.
- Mutations: a changed policy on the canary's deployed role breaks exactly the cases
  `MUTATIONS` names for the model, no others (`check_mutation`), and the moto half
  alone catches a broadened read (`check_moto_catches`).
- `proven_table`: the documented table is what the checks observe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.infra.isolation_cases import Model, Pair, World, pair, run_case
from tests.infra.isolation_support import ACCOUNT, inline_policies, observe, policy_replaced
from tests.infra.isolation_table import cases

DOC = Path(__file__).resolve().parents[2] / "docs" / "isolation.md"
PAIRS = [("acme", "globex"), ("globex", "acme")]  # both directions: (A, B)


def case_params(model: Model) -> list[tuple[str, str, str]]:
    """(case id, A, B) of every case of `model`, both directions: test ids `<case>-<A>-<B>`."""
    return [(case_id, a, b) for case_id in cases(model) for a, b in PAIRS]


def check_case(world: World, a: str, b: str, case_id: str) -> None:
    outcome = run_case(pair(world, a, b), cases(world.model)[case_id])
    assert outcome.offline == outcome.case.expected, outcome
    if outcome.case.probe_in(world.model) is not None:
        assert outcome.moto == outcome.case.expected, outcome


def broken(p: Pair) -> set[str]:
    """The test ids of the cases that do not hold for A (offline or in moto)."""
    found = cases(p.world.model).items()
    return {case_id for case_id, case in found if not run_case(p, case).holds}


def check_moto_blind(p: Pair, case_id: str, call: Callable[[], Any]) -> None:
    """moto allows `call`, which AWS (and the offline evaluator) deny for the case."""
    case = cases(p.world.model)[case_id]
    assert observe(call, case.action).decision == "allow"
    assert run_case(p, case).offline == "deny"


# --------------------------------------------------------------------------- #
# Mutations of the canary's TenantJobAccess: every case can fail
# --------------------------------------------------------------------------- #


def _statement(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    return next(s for s in doc["Statement"] if s["Sid"] == sid)


def _data_bucket_arn(doc: dict[str, Any]) -> str:
    return _statement(doc, "BucketLocation")["Resource"]


def _reads_every_silo_bucket(doc: dict[str, Any]) -> None:
    _statement(doc, "ReadOwnData")["Resource"] = [
        "arn:aws:s3:::trainyard-*/data/*",
        "arn:aws:s3:::trainyard-*/artifacts/*",
    ]


def _reads_every_pool_tenant(doc: dict[str, Any]) -> None:
    pool_arn = _data_bucket_arn(doc)
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


def _writes_whole_data_bucket(doc: dict[str, Any]) -> None:
    _statement(doc, "WriteOwnArtifacts")["Resource"] = f"{_data_bucket_arn(doc)}/*"


def _lists_without_condition(doc: dict[str, Any]) -> None:
    del _statement(doc, "ListOwnPrefixes")["Condition"]


def _lists_every_pool_tenant(doc: dict[str, Any]) -> None:
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


def _no_step_code_listing(doc: dict[str, Any]) -> None:
    # The policy as it was before ListPipelineCode: the jobs' code download failed.
    doc["Statement"].remove(_statement(doc, "ListPipelineCode"))


def _metrics_without_namespace(doc: dict[str, Any]) -> None:
    del _statement(doc, "JobMetrics")["Condition"]


def _allows(action: str | list[str], resource: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        resolved = resource.format(data_bucket=_data_bucket_arn(doc))
        doc["Statement"].append({"Effect": "Allow", "Action": action, "Resource": resolved})

    return change


@dataclass(frozen=True)
class Mutation:
    change: Callable[[dict[str, Any]], None]
    breaks: Mapping[Model, set[str]]  # per model it runs in: exactly the ids that break


def _everywhere(*case_ids: str) -> dict[Model, set[str]]:
    return {"silo": set(case_ids), "pool": set(case_ids)}


POOL_LISTINGS = {
    "cannot_list_own_tenant_root",
    "cannot_list_all_tenants",
    "cannot_list_other_tenant_prefix",
    "cannot_list_by_partial_tenant_id",
}
MUTATIONS: dict[str, Mutation] = {
    "reads_every_tenant_bucket": Mutation(
        _reads_every_silo_bucket,
        {"silo": {"cannot_read_other_tenant_uploads", "cannot_read_other_tenant_artifacts"}},
    ),
    "reads_every_tenant_prefix": Mutation(
        _reads_every_pool_tenant,
        {
            "pool": {
                "cannot_read_other_tenant_uploads",
                "cannot_read_other_tenant_artifacts",
                "cannot_read_tenant_whose_id_extends_own",
            }
        },
    ),
    "tenant_prefix_without_slash": Mutation(
        _prefix_without_slash, {"pool": {"cannot_read_tenant_whose_id_extends_own"}}
    ),
    "writes_anywhere_in_own_bucket": Mutation(
        _writes_whole_data_bucket, {"silo": {"cannot_write_own_uploads"}}
    ),
    "writes_whole_tenant_prefix": Mutation(
        _writes_whole_tenant_prefix, {"pool": {"cannot_write_own_uploads"}}
    ),
    "writes_whole_pool_bucket": Mutation(
        _writes_whole_data_bucket,
        {
            "pool": {
                "cannot_write_own_uploads",
                "cannot_write_other_tenant_uploads",
                "cannot_write_other_tenant_artifacts",
                "cannot_write_outside_tenant_prefixes",
            }
        },
    ),
    "lists_without_prefix_condition": Mutation(
        _lists_without_condition,
        {
            "silo": {"cannot_list_own_bucket_outside_its_prefixes"},
            "pool": POOL_LISTINGS | {"cannot_list_pool_bucket_root"},
        },
    ),
    "lists_every_tenant_prefix": Mutation(_lists_every_pool_tenant, {"pool": POOL_LISTINGS}),
    "lists_by_partial_tenant_id": Mutation(
        _lists_by_partial_id,
        {"pool": {"cannot_list_own_tenant_root", "cannot_list_by_partial_tenant_id"}},
    ),
    "reads_whole_platform_bucket": Mutation(
        _reads_whole_platform_bucket,
        {
            "silo": {"cannot_read_tenant_templates", "cannot_read_other_tenant_access_logs"},
            "pool": {"cannot_read_tenant_templates", "cannot_read_pool_access_logs"},
        },
    ),
    "calls_unrelated_services": Mutation(
        _allows(["dynamodb:*", "sqs:*"], "*"),
        _everywhere("cannot_read_tenant_registry", "cannot_forge_upload_events"),
    ),
    "cannot_write_artifacts_any_more": Mutation(
        _no_artifact_writes, _everywhere("writes_own_artifacts")
    ),
    "cannot_list_step_code": Mutation(
        _no_step_code_listing, _everywhere("lists_pipeline_step_code")
    ),
    "metrics_in_any_namespace": Mutation(
        _metrics_without_namespace, _everywhere("cannot_publish_platform_metrics")
    ),
    "configures_the_pool_bucket": Mutation(
        _allows("s3:PutBucket*", "{data_bucket}"),
        {"pool": {"cannot_change_pool_bucket_policy", "cannot_change_pool_bucket_notifications"}},
    ),
    "sagemaker_on_everything": Mutation(
        _allows("sagemaker:*", "*"),
        _everywhere(
            "cannot_register_models_in_other_tenant_group",
            "cannot_delete_other_tenant_model_group",
            "cannot_start_pipeline_executions",
        ),
    ),
    "passes_tenant_roles": Mutation(
        _allows("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/trainyard/tenants/*"),
        _everywhere("cannot_pass_other_tenant_role"),
    ),
}


def mutations(model: Model) -> list[str]:
    return [name for name, mutation in MUTATIONS.items() if model in mutation.breaks]


def _mutated(p: Pair, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    documents = copy.deepcopy(inline_policies(p.a.role_name))
    change(documents["TenantJobAccess"])
    return documents


def check_canary_holds(world: World) -> None:
    """Before any mutation, every case holds for the canary (B = globex)."""
    assert broken(pair(world, "canary", "globex")) == set()


def check_mutation(world: World, name: str) -> None:
    """Each case can fail: a deliberately broadened (or narrowed) policy on the
    canary tenant's role flips exactly the cases it must, and no others."""
    mutation = MUTATIONS[name]
    p = pair(world, "canary", "globex")
    try:
        with policy_replaced(p.a.role_name, _mutated(p, mutation.change)):
            assert broken(p) == mutation.breaks[world.model]
    finally:
        if world.model == "pool":
            _restore_pool_bucket(world)


def _restore_pool_bucket(world: World) -> None:
    """A broadened role's probes really run: undo what they may have done to the
    shared bucket (policy replaced, EventBridge delivery switched off)."""
    s3 = boto3.client("s3", region_name=world.region)
    s3.delete_bucket_policy(Bucket=world.pool_bucket)
    s3.put_bucket_notification_configuration(
        Bucket=world.pool_bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )


def check_moto_catches(world: World, name: str) -> None:
    """The moto half is not decorative: with the offline evaluator out of the picture,
    a real GetObject of B's upload signed by the broadened canary role succeeds; with
    the deployed policy it is denied."""
    p = pair(world, "canary", "globex")
    case = cases(world.model)["cannot_read_other_tenant_uploads"]
    probe = case.probe_in(world.model)
    assert probe is not None
    with policy_replaced(p.a.role_name, _mutated(p, MUTATIONS[name].change)):
        assert observe(lambda: probe(p), case.action).decision == "allow"
    assert observe(lambda: probe(p), case.action).decision == "deny"


# --------------------------------------------------------------------------- #
# The documented tables are the proven ones
# --------------------------------------------------------------------------- #


def proven_table(world: World) -> str:
    """The model's cases for A = acme, B = globex, as docs/isolation.md shows them."""
    p = pair(world, "acme", "globex")
    rows = [
        "| case (test id) | principal | action | resource | expected | moto | offline |",
        "|---|---|---|---|---|---|---|",
    ]
    for case_id, case in cases(world.model).items():
        outcome = run_case(p, case)
        context = "".join(f" `{k}={v}`" for k, v in outcome.request.context.items())
        moto = outcome.moto or f"n/a ({case.moto_gap(world.model)})"
        rows.append(
            f"| {case_id} | `{p.a.role_name}` | `{case.action}`{context} "
            f"| `{outcome.request.resource}` | {case.expected} | {moto} | {outcome.offline} |"
        )
    return "\n".join(rows)


def check_docs_table(world: World) -> None:
    table = proven_table(world)
    stale = f"docs/isolation.md is stale; the proven {world.model} table is:\n"
    assert table in DOC.read_text(), stale + table
