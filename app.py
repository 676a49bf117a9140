#!/usr/bin/env python3
"""CDK entry point (`npx cdk synth` runs `.venv/bin/python app.py`, see cdk.json)."""

from infra.app import build_app

build_app().synth()
