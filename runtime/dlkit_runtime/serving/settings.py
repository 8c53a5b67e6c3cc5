"""The server's knobs (`Settings`) and the environment variables that hold its token and TLS files. Standard library
only."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_ENV = "DLKIT_SERVE_TOKEN"
TLS_CERT_ENV = "DLKIT_SERVE_TLS_CERT"
TLS_KEY_ENV = "DLKIT_SERVE_TLS_KEY"


@dataclass
class Settings:
    """max_batch: samples per run at most. max_delay_ms: how long a request waits for others. max_queue: requests
    waiting per model before 503. max_body_mb: the largest request body. max_elements: per input tensor.
    max_image_pixels: the pixels of a request's encoded images together (read from their headers: 413 before any
    decoding). token: the bearer token every request but the health probes must carry. tls_cert, tls_key: PEM files
    of the certificate (its chain after it) and its private key: HTTPS only. max_text_bytes: the UTF-8 bytes of each
    string a text model's input holds (413 above it)."""

    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 256
    max_body_mb: float = 64.0
    max_elements: int = 1 << 26
    max_image_pixels: int = 40_000_000
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_text_bytes: int = 64 * 1024
