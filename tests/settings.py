"""Test settings: the product's settings with AWS mocked in-process and Celery eager.

pytest-django configures Django before any conftest runs, so test-only overrides live here.
"""

import os
from pathlib import Path

os.environ.setdefault("DEBUG", "true")

from shopbus_site.settings import *  # noqa: F403

# moto's mock_aws intercepts botocore in this process; tests that need the real server say so.
AWS_ENDPOINT_URL = None
USES_LOCAL_AWS = False
AWS_REGION = "us-east-1"
LOCAL_AWS_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

# The manifest storage needs `collectstatic` first; tests render pages without it.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# whitenoise serves from the apps' folders here (no collectstatic); an empty root keeps it from warning.
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EVENT_RETRY_BASE_SECONDS = 0
EVENT_CONSUMER_WAIT_SECONDS = 1
SQS_MAX_RECEIVE_COUNT = 3
PAYMENT_MAX_GATEWAY_ATTEMPTS = 2  # below SQS_MAX_RECEIVE_COUNT, as payments.checks requires
LOGGING["root"]["level"] = "ERROR"  # noqa: F405
