"""Bitrix24 connector: REST client with batching, app install, placements, robots, events.

Not built yet (issue "Bitrix24 connector"); see CHECKLIST.md for what it must do.
"""
