import os
import time

from django.apps import AppConfig


class SlowJobsConfig(AppConfig):
    name = "tests.jobs.slow_jobs"
    label = "test_slow_jobs"

    def ready(self) -> None:
        pause = float(os.environ.get("AGENT33_TEST_SLOW_EVALUATION_SECONDS", "0"))
        if pause:
            from outcomes import declines

            real = declines.declines_evaluate

            def slow(**kwargs):
                time.sleep(pause)
                return real(**kwargs)

            declines.declines_evaluate = slow

        chunk_pause = float(os.environ.get("AGENT33_TEST_SLOW_BATCH_CHUNK_SECONDS", "0"))
        if chunk_pause:
            from operations import batches

            real_chunk = batches._apply_chunk

            def slow_chunk(*args, **kwargs):
                time.sleep(chunk_pause)
                return real_chunk(*args, **kwargs)

            batches._apply_chunk = slow_chunk
