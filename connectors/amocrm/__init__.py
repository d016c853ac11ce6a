"""amoCRM (Kommo) connector: REST v4 client, OAuth install, widget JWT, webhooks, Digital Pipeline.

Not built yet (issue "amoCRM (Kommo) connector"); see CHECKLIST.md for what it must do.
"""
