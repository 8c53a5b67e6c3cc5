"""The server's knobs (`Settings`) and the environment variable that holds its token. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_ENV = "DLKIT_SERVE_TOKEN"


@dataclass
class Settings:
    """max_batch: samples per run at most. max_delay_ms: how long a request waits for others. max_queue: requests
    waiting per model before 503. max_body_mb: the largest request body. max_elements: per input tensor."""

    max_batch: int = 32
    max_delay_ms: float = 2.0
    max_queue: int = 256
    max_body_mb: float = 64.0
    max_elements: int = 1 << 26
    token: str | None = None
