"""A CRM that lives in our own database: the demo and the contract suite run on it."""
