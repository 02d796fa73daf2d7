"""Configuration from the environment, checked in fresh processes."""

import os
import subprocess
import sys

PROD_ENV = {"DEBUG": "0", "HTTPS": "1", "SECRET_KEY": "x" * 60 + "-a-real-long-random-key-9f8e7d"}


def manage(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "HTTPS", "SECRET_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args], capture_output=True, text=True, env=full_env,
        check=False,
    )


def test_debug_off_without_secret_key_is_refused_clearly():
    result = manage("check", env={"DEBUG": "0"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG=0" in result.stderr


def test_check_deploy_is_clean_with_https_and_a_real_key():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PROD_ENV)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_plain_http_with_debug_off_does_not_redirect():
    code = (
        "import django;django.setup();from django.conf import settings as s;"
        "print(getattr(s,'SECURE_SSL_REDIRECT',False), getattr(s,'SESSION_COOKIE_SECURE',False))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HTTPS",)}
    env.update(
        DEBUG="0", SECRET_KEY=PROD_ENV["SECRET_KEY"], DJANGO_SETTINGS_MODULE="agent33.settings"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            check=False)
    assert result.stdout.split() == ["False", "False"], result.stderr
