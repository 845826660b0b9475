"""arq background jobs; `jobs.worker.WorkerSettings` is what `arq` runs."""
