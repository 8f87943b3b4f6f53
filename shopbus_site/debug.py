"""What Django's error reports (the DEBUG 500 page, the error emails) may show of settings and request
META: nothing that can carry a secret."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter

# user:password@ (or a bare token@) right after a URL's scheme.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


class SecretMaskingExceptionReporterFilter(SafeExceptionReporterFilter):
    # Django's own list misses connection strings: CELERY_BROKER_URL is sqs://KEY:SECRET@host, a DSN
    # embeds its key, and a webhook URL is itself the credential. So every URL-, broker-, DSN- or
    # credential-named setting is hidden whole, whatever its value looks like today.
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|URL|URI|BROKER|DSN|CONNECTION",
        flags=re.IGNORECASE,
    )

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        # Under other names a connection string still carries its password in the userinfo (a cache's
        # LOCATION, an environment variable in runserver's META), so that part goes wherever it is.
        if isinstance(cleansed, str):
            return _URL_USERINFO.sub(rf"\g<scheme>{self.cleansed_substitute}@", cleansed)
        return cleansed
