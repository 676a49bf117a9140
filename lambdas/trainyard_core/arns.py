"""ARNs in any partition: the partition follows from the region (aws, aws-cn,
aws-us-gov, ...), never a literal aws partition in an ARN (a test keeps it that way)."""

from __future__ import annotations

# Region prefix -> partition, most specific first (botocore's partition data agrees;
# tests/unit/test_arns.py checks every region botocore knows).
_PARTITIONS = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-isof-", "aws-iso-f"),
    ("us-iso-", "aws-iso"),
    ("eu-isoe-", "aws-iso-e"),
    ("eusc-", "aws-eusc"),
)


def partition_of(region: str) -> str:
    for prefix, partition in _PARTITIONS:
        if region.startswith(prefix):
            return partition
    return "aws"


def arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{partition_of(region)}:{service}:{region}:{account}:{resource}"
