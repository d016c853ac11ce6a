"""Invoices (счета): counterparties, four kinds and room for more, CBR rates, amounts in words, credit
notes, payments and settlements. Pure domain: no Flask, no HTTP client, no concrete CRM connector."""
