"""A real, private redis-server for the test session (rq's own tests use a real Redis, not a fake)."""

from widget_server.local_redis import LocalRedis as RedisServer
from widget_server.local_redis import free_port

__all__ = ["RedisServer", "free_port"]
