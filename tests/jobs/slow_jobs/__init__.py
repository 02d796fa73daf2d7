"""A test-only app for worker processes started by the job tests (never installed by the
service): jobs that hang, spawn a child, or fail, and decline evaluations slowed down so a
test can kill a worker while one runs (`AGENT33_TEST_SLOW_EVALUATION_SECONDS`), and batch
chunks likewise (`AGENT33_TEST_SLOW_BATCH_CHUNK_SECONDS`)."""
