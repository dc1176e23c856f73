"""Code that every Retain service shares.

Modules: ``settings`` (environment parsing), ``certs`` (the development mesh
CA), ``credentials`` (mTLS for servers and channels), ``callers`` (per-RPC
allow-lists), ``interceptor`` (caller checks, request validation and error
mapping), ``errors`` (the exception tree), ``server`` (grpc.aio server
assembly), ``db`` (engines and migrations), ``clock``, ``logs``, ``phone``,
``paging`` and ``money``.
"""
