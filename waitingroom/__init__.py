"""The waiting room: the aiohttp edge service visitors queue in."""
