"""Demand response and the tenants' money: orders from the grid operator (entered by an
operator or received over OpenADR 2.0b), baselines, the fair split among tenants, the
settlement of each event, the allocation of the shared assets and the monthly statements.

The arithmetic (``orders``, ``baselines``, ``split``, ``settlement``, ``allocation``,
``statements``) is pure: numbers in, numbers out. ``events`` and ``billing`` run it against
the registry and the metered data; ``ven`` is the OpenADR client (the only openleadr
module), ``statement_files`` writes CSV and PDF. docs/demand-response.md tells the story.
"""
