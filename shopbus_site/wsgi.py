import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from shopbus_site.heap import freeze_startup_heap

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopbus_site.settings")
application = get_wsgi_application()
if settings.OUTBOX_RELAY_IN_WEB:
    from eventbus.web import publish_own_commits

    publish_own_commits()
freeze_startup_heap()
