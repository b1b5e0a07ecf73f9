"""Pure dialect mapping tables and block converters shared by an inbound dialect (``wire``) and
the outbound adapter of the same dialect (``adapters``).  Modules here import only ``types``,
``events`` and ``errors``; both ``wire`` and ``adapters`` may import them."""
