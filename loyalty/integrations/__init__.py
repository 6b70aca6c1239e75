"""The company's systems talking to the program as things happen: the HTTP API (``api``),
its keys (``apikeys``), idempotent answers (``idempotency``) and signed webhooks
(``webhooks``, fed by the outbox of :mod:`loyalty.events`)."""
