"""The idle wait before each timed run lives in runtime/idle.py, shared with the tuner and the bot."""

from runtime.idle import DEFAULT_TIMEOUT_S, IdleWait, busy_threads, summarise, timed_after_idle_ms, wait_until_idle

__all__ = ["DEFAULT_TIMEOUT_S", "IdleWait", "busy_threads", "summarise", "timed_after_idle_ms", "wait_until_idle"]
