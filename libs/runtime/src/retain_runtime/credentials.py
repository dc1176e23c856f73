"""mTLS credentials for servers and channels, read from a certificate folder."""

from __future__ import annotations

import grpc

from retain_runtime.certs import CertPaths

# Mesh names: one certificate each. "operator" is the retain CLI.
MESH_NAMES = ["user", "events", "inference", "comms", "worker", "envoy", "operator"]

# gRPC message size limit shared by servers, clients and Envoy, in bytes.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def server_credentials(paths: CertPaths) -> grpc.ServerCredentials:
    """Return TLS server credentials that require a client certificate."""
    return grpc.ssl_server_credentials(
        [(paths.key.read_bytes(), paths.cert.read_bytes())],
        root_certificates=paths.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(paths: CertPaths) -> grpc.ChannelCredentials:
    """Return TLS channel credentials that present this member's certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=paths.ca.read_bytes(),
        private_key=paths.key.read_bytes(),
        certificate_chain=paths.cert.read_bytes(),
    )


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Certificates name localhost; the target may be 127.0.0.1.
    ("grpc.ssl_target_name_override", "localhost"),
]


def aio_channel(target: str, paths: CertPaths) -> grpc.aio.Channel:
    """Open an asyncio mTLS channel to a mesh service."""
    return grpc.aio.secure_channel(
        target, channel_credentials(paths), options=CHANNEL_OPTIONS
    )


def sync_channel(target: str, paths: CertPaths) -> grpc.Channel:
    """Open a blocking mTLS channel to a mesh service."""
    return grpc.secure_channel(target, channel_credentials(paths), options=CHANNEL_OPTIONS)
