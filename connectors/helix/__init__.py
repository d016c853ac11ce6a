"""Helix (MIS) daily visits export reader.

Not built yet (issue "Appointment sync from dental MIS"); see CHECKLIST.md.
"""
