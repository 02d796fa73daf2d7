import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent33.settings")
django_application = get_wsgi_application()

from agent33.api.middleware import ChunkedBodyBuffer  # noqa: E402 -- needs settings loaded

application = ChunkedBodyBuffer(django_application)

# Everything loaded so far (Django, DRF, the apps, the engines' modules) lives as long as the
# process. Moved out of the collector's reach, it is no longer rescanned by every full
# collection a request triggers, which shows as the slowest requests' latency.
gc.collect()
gc.freeze()
