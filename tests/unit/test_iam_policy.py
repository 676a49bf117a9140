"""The IAM evaluator against AWS's documented evaluation logic (IAM User Guide:
"Policy evaluation logic", "IAM JSON policy elements: Condition operators",
"Resource", "NotAction"). Each test names the documented rule it checks."""

from __future__ import annotations

import pytest

from trainyard.local.iam.policy import (
    IDENTITY_DENY,
    IMPLICIT_DENY,
    RESOURCE_DENY,
    Request,
    RequestPrincipal,
    UnsupportedPolicyError,
    arn_match,
    evaluate,
    evaluate_resource_policy,
)

BUCKET = "arn:aws:s3:::tenant-a"
OBJECT = "arn:aws:s3:::tenant-a/data/x.csv"
ROLE = "arn:aws:iam::123456789012:role/app"
ME = RequestPrincipal(arn=ROLE, account="123456789012")


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str], **extra: object) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str], **extra: object) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def test_a_request_nothing_allows_is_implicitly_denied() -> None:
    decision = evaluate([doc(allow("s3:PutObject", OBJECT))], Request("s3:GetObject", OBJECT))
    assert not decision and decision.denial == IMPLICIT_DENY


def test_an_explicit_deny_overrides_any_allow() -> None:
    policies = [doc(allow("s3:*", "*")), doc(deny("s3:GetObject", f"{BUCKET}/*"))]
    decision = evaluate(policies, Request("s3:GetObject", OBJECT))
    assert not decision and decision.denial == IDENTITY_DENY


def test_actions_match_case_insensitively_with_wildcards() -> None:
    policy = [doc(allow("S3:get*", "*"))]
    assert evaluate(policy, Request("s3:GetObject", OBJECT))
    assert evaluate(policy, Request("s3:GetBucketTagging", BUCKET))
    assert not evaluate(policy, Request("s3:PutObject", OBJECT))
    assert evaluate([doc(allow("s3:Get?bject", "*"))], Request("s3:GetObject", OBJECT))


def test_not_action_allows_everything_but_the_listed_actions() -> None:
    policy = [doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})]
    assert evaluate(policy, Request("s3:GetObject", OBJECT))
    assert not evaluate(policy, Request("iam:PassRole", ROLE))


def test_resources_are_case_sensitive() -> None:
    policy = [doc(allow("s3:GetObject", "arn:aws:s3:::Tenant-A/*"))]
    assert not evaluate(policy, Request("s3:GetObject", OBJECT))


def test_not_resource_allows_everything_but_the_listed_resources() -> None:
    policy = [
        doc({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/secret/*"})
    ]
    assert evaluate(policy, Request("s3:GetObject", OBJECT))
    assert not evaluate(policy, Request("s3:GetObject", f"{BUCKET}/secret/k"))


def test_arn_wildcards_match_within_one_component_of_the_arn() -> None:
    # "Each of the six colon-delimited components of the ARN is checked separately."
    assert arn_match("arn:aws:sqs:*:123456789012:q", "arn:aws:sqs:us-east-1:123456789012:q")
    assert not arn_match("arn:aws:sqs:us-*:123456789012:q", "arn:aws:sqs:eu-west-1:123456789012:q")
    # A wildcard account does not swallow colons of the resource part.
    assert not arn_match("arn:aws:iam::*:role/x", "arn:aws:iam::123:role/y:role/x")
    assert not arn_match("arn:aws:s3:::a*", "arn:aws:sqs:us-east-1:1:a")
    # The resource id (after the fifth colon) may itself contain colons.
    pattern = "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/*"
    assert arn_match(pattern, "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/X:log-stream:y")
    assert arn_match("*", "arn:aws:s3:::anything")


def test_conditions_are_anded_across_keys_and_ored_across_values() -> None:
    statement = allow(
        "s3:ListBucket",
        BUCKET,
        Condition={
            "StringLike": {"s3:prefix": ["data/*", "artifacts/*"]},
            "StringEquals": {"aws:PrincipalAccount": "123456789012"},
        },
    )
    ok = {"s3:prefix": "artifacts/run/", "aws:PrincipalAccount": "123456789012"}
    assert evaluate([doc(statement)], Request("s3:ListBucket", BUCKET, ok))
    wrong_account = {**ok, "aws:PrincipalAccount": "999999999999"}
    assert not evaluate([doc(statement)], Request("s3:ListBucket", BUCKET, wrong_account))
    wrong_prefix = {**ok, "s3:prefix": "other/"}
    assert not evaluate([doc(statement)], Request("s3:ListBucket", BUCKET, wrong_prefix))


def test_a_missing_condition_key_fails_a_positive_operator_and_passes_a_negated_one() -> None:
    needs_prefix = allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": "data/*"}})
    assert not evaluate([doc(needs_prefix)], Request("s3:ListBucket", BUCKET))
    negated = allow("s3:ListBucket", BUCKET, Condition={"StringNotLike": {"s3:prefix": "x/*"}})
    assert evaluate([doc(negated)], Request("s3:ListBucket", BUCKET))
    if_exists = allow(
        "s3:ListBucket", BUCKET, Condition={"StringLikeIfExists": {"s3:prefix": "data/*"}}
    )
    assert evaluate([doc(if_exists)], Request("s3:ListBucket", BUCKET))


def test_condition_key_names_are_case_insensitive_and_values_are_not() -> None:
    statement = allow(
        "iam:PassRole",
        ROLE,
        Condition={"StringEquals": {"iam:passedtoservice": "sagemaker.amazonaws.com"}},
    )
    ok = Request("iam:PassRole", ROLE, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert evaluate([doc(statement)], ok)
    shouted = Request("iam:PassRole", ROLE, {"iam:PassedToService": "SAGEMAKER.amazonaws.com"})
    assert not evaluate([doc(statement)], shouted)


def test_null_bool_arn_and_numeric_operators() -> None:
    tls_only = deny("s3:*", "*", Condition={"Bool": {"aws:SecureTransport": "false"}})
    everything = allow("s3:*", "*")
    https = Request("s3:GetObject", OBJECT, {"aws:SecureTransport": "true"})
    http = Request("s3:GetObject", OBJECT, {"aws:SecureTransport": "false"})
    assert evaluate([doc(everything, tls_only)], https)
    assert not evaluate([doc(everything, tls_only)], http)
    tagged = allow("s3:GetObject", "*", Condition={"Null": {"aws:RequestTag/team": "false"}})
    assert evaluate([doc(tagged)], Request("s3:GetObject", OBJECT, {"aws:RequestTag/team": "a"}))
    assert not evaluate([doc(tagged)], Request("s3:GetObject", OBJECT))
    source = allow(
        "sns:Publish",
        "*",
        Condition={"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:*:123456789012:alarm:x-*"}},
    )
    alarm = {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:x-errors"}
    assert evaluate([doc(source)], Request("sns:Publish", "arn:aws:sns:::t", alarm))
    small = allow("s3:PutObject", "*", Condition={"NumericLessThan": {"s3:max-keys": "10"}})
    assert evaluate([doc(small)], Request("s3:PutObject", OBJECT, {"s3:max-keys": "3"}))
    assert not evaluate([doc(small)], Request("s3:PutObject", OBJECT, {"s3:max-keys": "30"}))


def test_set_operators_take_multivalued_keys() -> None:
    any_value = allow(
        "s3:GetObject", "*", Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["a", "b"]}}
    )
    all_values = allow(
        "s3:GetObject", "*", Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}
    )
    assert evaluate([doc(any_value)], Request("s3:GetObject", OBJECT, {"aws:TagKeys": ["a", "z"]}))
    assert not evaluate(
        [doc(all_values)], Request("s3:GetObject", OBJECT, {"aws:TagKeys": ["a", "z"]})
    )
    assert evaluate([doc(all_values)], Request("s3:GetObject", OBJECT, {"aws:TagKeys": ["b"]}))
    with pytest.raises(UnsupportedPolicyError):
        evaluate(
            [doc(allow("s3:GetObject", "*", Condition={"StringEquals": {"aws:TagKeys": "a"}}))],
            Request("s3:GetObject", OBJECT, {"aws:TagKeys": ["a", "b"]}),
        )


def test_same_account_access_is_allowed_by_the_identity_or_the_resource_policy() -> None:
    bucket_policy = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": ROLE},
            "Action": "s3:GetObject",
            "Resource": OBJECT,
        }
    )
    request = Request("s3:GetObject", OBJECT)
    assert evaluate([], request, resource_document=bucket_policy, principal=ME)
    assert evaluate([doc(allow("s3:GetObject", OBJECT))], request, resource_document=doc())


def test_an_account_principal_in_a_resource_policy_delegates_to_identity_policies() -> None:
    # Granting the account (root) does not grant its principals by itself.
    root = doc(
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "s3:*",
            "Resource": "*",
        }
    )
    assert not evaluate([], Request("s3:GetObject", OBJECT), resource_document=root, principal=ME)


def test_a_deny_in_the_resource_policy_wins_over_the_identity_allow() -> None:
    tls = doc(
        {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    identity = [doc(allow("s3:GetObject", OBJECT))]
    http = Request("s3:GetObject", OBJECT, {"aws:SecureTransport": "false"})
    https = Request("s3:GetObject", OBJECT, {"aws:SecureTransport": "true"})
    decision = evaluate(identity, http, resource_document=tls, principal=ME)
    assert not decision and decision.denial == RESOURCE_DENY
    assert evaluate(identity, https, resource_document=tls, principal=ME)


def test_a_trust_policy_admits_only_the_named_service_and_its_conditions() -> None:
    trust = doc(
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}},
        }
    )
    sagemaker = RequestPrincipal(service="sagemaker.amazonaws.com")
    good = Request("sts:AssumeRole", ROLE, {"aws:SourceAccount": "123456789012"})
    assert evaluate_resource_policy(trust, good, sagemaker)
    assert not evaluate_resource_policy(trust, Request("sts:AssumeRole", ROLE), sagemaker)
    lambda_ = RequestPrincipal(service="lambda.amazonaws.com")
    assert not evaluate_resource_policy(trust, good, lambda_)


@pytest.mark.parametrize(
    "statement",
    [
        allow("s3:GetObject", "arn:aws:s3:::${aws:username}/*"),
        allow("s3:GetObject", "*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020"}}),
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Principal": "*"},
        {"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"},
    ],
    ids=["policy-variable", "date-operator", "principal-in-identity-policy", "bad-effect"],
)
def test_anything_the_evaluator_does_not_model_fails_closed(statement: dict) -> None:
    with pytest.raises(UnsupportedPolicyError):
        evaluate([doc(statement)], Request("s3:GetObject", OBJECT))


def test_arn_equals_takes_wildcards_like_arn_like() -> None:
    statement = allow(
        "sqs:SendMessage",
        "*",
        Condition={"ArnEquals": {"aws:SourceArn": "arn:aws:events:*:123456789012:rule/t-*"}},
    )
    rule = {"aws:SourceArn": "arn:aws:events:us-east-1:123456789012:rule/t-acme"}
    assert evaluate([doc(statement)], Request("sqs:SendMessage", "arn:aws:sqs:::q", rule))


def test_an_aws_star_principal_is_everyone_services_included() -> None:
    tls = doc(
        {
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "sns:Publish",
            "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    request = Request("sns:Publish", "arn:aws:sns:::t", {"aws:SecureTransport": "false"})
    service = RequestPrincipal(service="cloudwatch.amazonaws.com")
    decision = evaluate([], request, resource_document=tls, principal=service)
    assert not decision and decision.denial == RESOURCE_DENY
