import pytest
import redis
from celery import Celery

from tests.workers import celery_worker

BROKER = "redis://127.0.0.1:6379/14"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_tasks_from_the_redis_broker(require_postgres, require_redis,
                                                          tmp_path):
    redis.Redis.from_url(BROKER).flushdb()
    # Not set as the current app: shared tasks elsewhere in this process must stay eager.
    client = Celery("agent33-test", broker=BROKER, backend=BROKER, set_as_current=False)
    with celery_worker(BROKER, log_path=tmp_path / "worker.log", CELERY_RESULT_BACKEND=BROKER):
        result = client.send_task("agent33.ping")
        # (A sync wait is what this test is about; Celery's guard against waiting inside a
        # task can misfire after eager tasks ran earlier in this process.)
        outcome = result.get(timeout=120, disable_sync_subtasks=False)
        assert outcome == {"pong": True, "database": "postgresql"}
