"""Lua scripts run by SHA: each change that must touch several keys atomically is one round trip."""

from __future__ import annotations

import weakref
from typing import Any

import redis


class Script:
    """A Lua script registered once per client (redis-py then runs it by SHA)."""

    def __init__(self, source: str):
        self.source = source
        self.registered: weakref.WeakKeyDictionary[redis.Redis, Any] = weakref.WeakKeyDictionary()

    def __call__(self, keys: list[str], args: list[Any], client: redis.Redis) -> Any:
        script = self.registered.get(client)
        if script is None:
            script = self.registered[client] = client.register_script(self.source)
        return script(keys=keys, args=args)


# Members of the set KEYS[i] and the set itself, for i from ARGV[#ARGV] on (keys tracked per user).
DROP_TRACKED_LUA = """
    for i = tonumber(ARGV[#ARGV]), #KEYS do
        for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do redis.call('DEL', key) end
        redis.call('DEL', KEYS[i])
    end
"""
