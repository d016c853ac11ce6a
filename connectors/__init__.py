"""CRM and MIS connectors. Each translates one platform to the neutral types in `connectors.types`.

Connectors never import `widget_server`: they receive tokens through `TokenSource` and rate-limit
budgets through `connectors.ratelimit`, and they return neutral dataclasses.
"""
