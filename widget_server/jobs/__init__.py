"""rq jobs. Each takes ids, never ORM objects, and reaches services through `runtime.current()`."""
