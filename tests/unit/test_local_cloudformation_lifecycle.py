"""The embedded CloudFormation's AWS::S3::Bucket LifecycleConfiguration: applied as
S3's lifecycle configuration, changed and removed on update, and, as in AWS, only
when the service role may s3:PutLifecycleConfiguration (its create handler's
permission in the registry schema)."""

from __future__ import annotations

from typing import Any

from tests.unit.cfn_support import ACCOUNT, Account, bucket, bucket_exists, client, error_of

STACK = "trainyard-tenant-acme"
NAME = f"trainyard-acme-{ACCOUNT}"
RULES = {
    "Rules": [
        {
            "Id": "AbortIncompleteMultipartUploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        },
        {
            "Id": "ExpireNoncurrentVersions",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
            "ExpiredObjectDeleteMarker": True,
        },
    ]
}


def _template(lifecycle: dict[str, Any] | None) -> dict[str, Any]:
    props: dict[str, Any] = {"VersioningConfiguration": {"Status": "Enabled"}}
    if lifecycle is not None:
        props["LifecycleConfiguration"] = lifecycle
    return {"Resources": {"Data": bucket(NAME, **props)}}


def _rules() -> dict[str, dict[str, Any]]:
    answer = client("s3").get_bucket_lifecycle_configuration(Bucket=NAME)
    return {rule["ID"]: rule for rule in answer["Rules"]}


def test_a_buckets_lifecycle_rules_are_applied_to_s3(cfn: Account) -> None:
    cfn.allow_handlers_of(_template(RULES))
    assert cfn.create(STACK, _template(RULES))["StackStatus"] == "CREATE_COMPLETE"
    rules = _rules()
    assert rules["AbortIncompleteMultipartUploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 1
    }
    expire = rules["ExpireNoncurrentVersions"]
    assert expire["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert expire["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert {rule["Status"] for rule in rules.values()} == {"Enabled"}


def test_an_update_changes_the_rules_and_removing_them_deletes_the_configuration(
    cfn: Account,
) -> None:
    cfn.allow_handlers_of(_template(RULES))
    cfn.create(STACK, _template(RULES))
    shorter = {
        "Rules": [{**RULES["Rules"][1], "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]
    }
    assert cfn.update(STACK, _template(shorter))["StackStatus"] == "UPDATE_COMPLETE"
    assert list(_rules()) == ["ExpireNoncurrentVersions"]
    assert (
        _rules()["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7
    )
    assert cfn.update(STACK, _template(None))["StackStatus"] == "UPDATE_COMPLETE"
    code, _ = error_of(lambda: client("s3").get_bucket_lifecycle_configuration(Bucket=NAME))
    assert code == "NoSuchLifecycleConfiguration"


def test_without_put_lifecycle_configuration_the_bucket_fails_to_create(cfn: Account) -> None:
    cfn.allow_handlers_of(_template(RULES), but="s3:PutLifecycleConfiguration")
    stack = cfn.create(STACK, _template(RULES))
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    [reason] = [r for lid, status, r in cfn.events(STACK) if status == "CREATE_FAILED"]
    assert "is not authorized to perform: s3:PutLifecycleConfiguration on resource: " in reason
    assert f"arn:aws:s3:::{NAME}" in reason
    assert not bucket_exists(NAME)


def test_an_unsupported_lifecycle_rule_property_fails_loudly(cfn: Account) -> None:
    transitions = {
        "Rules": [
            {
                "Status": "Enabled",
                "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 30}],
            }
        ]
    }
    stack = cfn.create(STACK, _template(transitions))
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    [reason] = [r for lid, status, r in cfn.events(STACK) if status == "CREATE_FAILED"]
    assert "LifecycleConfiguration rule ['Transitions']" in reason
