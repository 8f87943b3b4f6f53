"""boto3 clients configured from settings: the local endpoint (moto's server) or real AWS."""

from __future__ import annotations

from functools import cache

import boto3
from botocore.config import Config
from django.core.signals import setting_changed
from django.dispatch import receiver

# The pool is large enough for the concurrent reads of every queue at once (selectors.message_counts_of).
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=40, max_pool_connections=20
)
# For probes that must answer within a load balancer's timeout: one attempt, short waits.
_FAST_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=3)


@cache
def client(service_name: str, *, fast: bool = False):
    from django.conf import settings

    return boto3.session.Session(**settings.LOCAL_AWS_CREDENTIALS).client(
        service_name,
        region_name=settings.AWS_REGION,
        endpoint_url=settings.AWS_ENDPOINT_URL,
        config=_FAST_CONFIG if fast else _CONFIG,
    )


@receiver(setting_changed)
def _forget_clients_when_aws_settings_change(*, setting: str, **kwargs) -> None:
    if setting.startswith("AWS_"):
        client.cache_clear()


def explain(exc: Exception) -> str:
    """One line an operator can act on, for the errors a command can meet talking to AWS."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )
    from django.conf import settings

    endpoint = settings.AWS_ENDPOINT_URL or f"AWS in {settings.AWS_REGION}"
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if isinstance(exc, ProfileNotFound):
        return f"{exc}: check AWS_PROFILE"
    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION"
    if isinstance(exc, EndpointConnectionError):
        hint = " (is the local stack running? `make run` starts it)" if settings.AWS_ENDPOINT_URL else ""
        return f"cannot reach {endpoint}{hint}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{endpoint} refused {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"
