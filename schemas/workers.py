"""Book-keeping of the populate workers: who is working, failed attempts per job, and the scheduler lease.

The job queues themselves are DataJoint's (``~~<table>`` next to every computed table); these tables hold
what DataJoint's queue has no room for. Times are the database server's, so hosts with skewed clocks agree.
"""

import datajoint as dj

schema = dj.Schema()


@schema
class Worker(dj.Manual):
    definition = """
    # one populate worker process, as it last reported itself
    worker_id : varchar(255)                  # host:pid:start time
    ---
    host : varchar(255)
    pid : int32
    pid_ns = "" : varchar(32)                 # the PID namespace, as in /proc/self/ns/pid
    started = CURRENT_TIMESTAMP(3) : datetime(3)
    last_seen = CURRENT_TIMESTAMP(3) : datetime(3)
    state = "starting" : varchar(16)          # starting, working, idle, stopped, aborted, failed
    jobs_done = 0 : int32
    jobs_failed = 0 : int32
    jobs_per_min = 0 : float64                # over the last five minutes
    current_job = "" : varchar(1023)          # table and key of the job in hand
    connection_id = 0 : int64                 # the server's id of this worker's connection
    """


@schema
class JobAttempt(dj.Manual):
    definition = """
    # failed attempts of one job, counted for the retry policy
    table_name : varchar(255)                 # full name of the computed table
    job_hash : char(32)                       # md5 of the job key
    ---
    job_key : varchar(1023)                   # the key, as JSON
    attempts : int32
    last_error = "" : varchar(2047)
    last_time = CURRENT_TIMESTAMP(3) : datetime(3)
    """


@schema
class Lease(dj.Manual):
    definition = """
    # a named lock with an expiry time, taken with one atomic UPDATE on PostgreSQL and MySQL alike
    lease : varchar(32)
    ---
    holder = "" : varchar(255)                # worker_id of the holder; empty when free
    expires_at = CURRENT_TIMESTAMP(3) : datetime(3)
    last_run = null : datetime(3)             # when the holder last finished the leased step
    """
