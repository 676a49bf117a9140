"""ARNs follow the region's partition; no code writes a literal aws partition."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
from trainyard_core.arns import partition_of

ROOT = Path(__file__).resolve().parents[2]


def _regions() -> list[tuple[str, str]]:
    session = boto3.session.Session()
    out = []
    for partition in session.get_available_partitions():
        regions = set(session.get_available_regions("s3", partition))
        regions |= set(session.get_available_regions("ec2", partition))
        out += [(region, session.get_partition_for_region(region)) for region in regions]
    return sorted(out)


@pytest.mark.parametrize(("region", "partition"), _regions())
def test_the_partition_of_every_region_botocore_knows(region: str, partition: str) -> None:
    assert partition_of(region) == partition


def test_no_code_hard_codes_the_aws_partition_in_an_arn() -> None:
    """Deployed code (Lambdas, CDK app) builds ARNs from the region's partition or
    CloudFormation's AWS::Partition; `arn:aws:` only in docstrings of examples."""
    literal = re.compile(r"""["'f]arn:aws:""")
    offenders = []
    for top in ("lambdas", "infra"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if literal.search(line) and "cdk-hnb659fds-assets" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
