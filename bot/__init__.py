"""Telegram bot: a thin consumer of runtime/ (no image or model logic lives here)."""
