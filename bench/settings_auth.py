from agent33.settings import *  # noqa: F403

ROOT_URLCONF = "bench.auth_urls"
