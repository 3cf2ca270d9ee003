"""Jobs: runs detached from the request that started them (``/api/v1/jobs``).

:mod:`.model` (a job, its statuses), :mod:`.store` (what the session store keeps of them),
:mod:`.work` (a job's run through the same service and orchestration entry points as the synchronous
endpoints), :mod:`.runner` (the thread that runs a job, heartbeats, cancellation, interrupted jobs).
"""
