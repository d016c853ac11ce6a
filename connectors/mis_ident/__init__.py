"""IDENT (dental MIS) appointment source and HTTP contract.

Not built yet (issue "Appointment sync from dental MIS"); see CHECKLIST.md.
"""
