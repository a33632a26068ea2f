"""Filters shared by the feature routers."""

from aiogram import F

# A step waiting for a photo or a colour must let commands through to their own handlers.
NOT_A_COMMAND = ~F.text.startswith("/")
