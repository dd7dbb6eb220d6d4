"""GA4GH TES v1.1 over acjob jobs: the task model, the in-job runner, task documents."""
