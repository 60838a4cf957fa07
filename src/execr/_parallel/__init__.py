"""Many runs: worker processes (``_pool``), ``execute_many`` and the Ray backend and the result
cache (``_many``), and ``execr batch`` (``_batch``)."""
