"""amoCRM (Kommo) connector: REST v4 client, OAuth install, widget JWT, webhooks, Digital Pipeline.

See CHECKLIST.md for what is done and what is not.
"""

from .client import AmoCrmClient
from .hooks import SUPPORTED_EVENTS, parse_account_hook, parse_dp_hook
from .oauth import AmoOAuth

__all__ = ["SUPPORTED_EVENTS", "AmoCrmClient", "AmoOAuth", "parse_account_hook", "parse_dp_hook"]
