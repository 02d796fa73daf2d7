# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    OMP_THREAD_LIMIT=1 MEDIA_ROOT=/data/media
WORKDIR /app

COPY pyproject.toml README.md ./
COPY agent33 agent33
COPY operations operations
COPY multimodal multimodal
COPY outcomes outcomes
COPY webhooks webhooks
COPY manage.py gunicorn.conf.py ./
RUN pip install . && useradd --create-home --uid 1000 agent33 && mkdir -p /data/media /metrics \
    && chown -R agent33 /data /metrics
# collectstatic needs settings but no database or real secret.
RUN DEBUG=0 SECRET_KEY=build-only python manage.py collectstatic --noinput

USER agent33
EXPOSE 8000
# The service logs one access line per request itself (gunicorn.conf.py, JSON by default).
CMD ["gunicorn", "agent33.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
