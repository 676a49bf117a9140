"""The catalog's training images as URIs of the settings' region.

The SageMaker SDK knows each framework image's registry account per region
(``sagemaker.core.image_uris``, as ``build.py`` resolves the pipeline's default
images). The CDK app and the embedded stack call :func:`with_image_uris` once, when
they resolve the settings they ship to the Lambdas, so the scheduler reads a plain
URI (``Algorithm.image.uri``) and no Lambda imports the SDK.
"""

from __future__ import annotations

from trainyard_core.config import Settings

from pipeline.sdk_offline import offline_sdk, offline_session


def with_image_uris(settings: Settings) -> Settings:
    """``settings`` with every catalog image's ``uri`` filled in (a URI already
    given, a provider's own image, is kept)."""
    if all(a.image.uri for a in settings.algorithms.values()):
        return settings
    default_plan = settings.plan(settings.default_plan)
    with offline_sdk():
        from sagemaker.core import image_uris

        session = offline_session(settings.region)
        algorithms = {}
        for name, algorithm in settings.algorithms.items():
            image = algorithm.image
            if image.uri is None:
                uri = image_uris.retrieve(
                    image.framework,
                    region=settings.region,
                    version=image.version,
                    # Framework images are per CPU/GPU; every plan trains on CPU types.
                    instance_type=default_plan.training_instance_type,
                    sagemaker_session=session,
                )
                image = image.model_copy(update={"uri": uri})
            algorithms[name] = algorithm.model_copy(update={"image": image})
    return settings.model_copy(update={"algorithms": algorithms})
