"""The populate worker, in one place: :mod:`.loop` is the database-free loop (signals, retries, reconnects,
tested with a fake queue); :mod:`.queue` drives DataJoint's job tables for it and holds the scheduler step."""
