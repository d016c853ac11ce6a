"""Appointment sync from dental MIS (IDENT, Helix) into CRM deals: the upsert rules, patient → contact
matching, one deal per appointment, primary vs repeat, the stage map and the sync log.

Domain code: it takes `connectors.types.Appointment` values from whichever reader produced them and never
imports a MIS or CRM connector; CRM effects leave through the outbox.
"""
