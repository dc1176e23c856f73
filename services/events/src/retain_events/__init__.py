"""The events service: ingest of customer activity and the sequences scoring reads.

Modules: ``server`` (assembly and start), ``servicer`` (the RPCs),
``validators`` (request checks), ``policy`` (who may call what), ``store``
(PostgreSQL), ``ingest`` (batches as columns), ``sequences`` (packing pages
of CustomerSequence) and ``windows`` (time windows and Nairobi days).
"""
