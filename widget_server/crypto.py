"""Encryption at rest for OAuth tokens, with key rotation.

TOKEN_ENCRYPTION_KEY holds one or more Fernet keys, newest first. New tokens are encrypted with the first;
any listed key decrypts, so an operator rotates by prepending a key and running `clinicbridge tokens
rotate`, then dropping the old key.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from connectors.types import OAuthToken

__all__ = ["TokenCipher", "TokenDecryptError"]


class TokenDecryptError(RuntimeError):
    """No configured key decrypts the stored token (key removed before rotation finished)."""


class TokenCipher:
    def __init__(self, keys: tuple[str, ...]) -> None:
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt_token(self, token: OAuthToken) -> str:
        document: dict[str, Any] = {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "extra": dict(token.extra),
        }
        return self._fernet.encrypt(json.dumps(document).encode()).decode()

    def decrypt_token(self, ciphertext: str) -> OAuthToken:
        try:
            raw = self._fernet.decrypt(ciphertext.encode())
        except InvalidToken:
            raise TokenDecryptError("stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY") from None
        document = json.loads(raw)
        expires = document.get("expires_at")
        return OAuthToken(
            access_token=document["access_token"],
            refresh_token=document.get("refresh_token"),
            expires_at=datetime.fromisoformat(expires) if expires else None,
            extra=document.get("extra") or {},
        )

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise TokenDecryptError("stored token cannot be decrypted with TOKEN_ENCRYPTION_KEY") from None
