"""OAuth tokens are encrypted at rest, and rotating the key keeps them readable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet

from connectors.errors import RetryLater
from connectors.types import OAuthToken
from widget_server.crypto import TokenCipher, TokenDecryptError
from widget_server.models import Portal
from widget_server.tokens import DbTokenSource


def _token() -> OAuthToken:
    return OAuthToken(
        access_token="acc-SECRET-1",
        refresh_token="ref-SECRET-2",
        expires_at=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
        extra={"scope": "crm"},
    )


def test_token_column_holds_no_plaintext(rt, portal):
    DbTokenSource(rt, portal.id).save(_token())
    with rt.db.engine.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT token_ciphertext FROM portals WHERE id = ?"
            if rt.db.is_sqlite
            else "SELECT token_ciphertext FROM portals WHERE id = %s",
            (portal.id,),
        ).scalar_one()
    assert "acc-SECRET-1" not in raw and "ref-SECRET-2" not in raw
    stored = DbTokenSource(rt, portal.id).get()
    assert (stored.access_token, stored.refresh_token, stored.expires_at) == (
        _token().access_token, _token().refresh_token, _token().expires_at)
    assert stored.extra["scope"] == "crm" and "saved_at" in stored.extra


def test_expiry_is_stored_for_scheduling_refreshes(rt, portal):
    DbTokenSource(rt, portal.id).save(_token())
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).token_expires_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_rotation_keeps_old_tokens_readable_and_reencrypts():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = TokenCipher((old,)).encrypt_token(_token())
    rotated_cipher = TokenCipher((new, old))
    assert rotated_cipher.decrypt_token(stored) == _token()
    rotated = rotated_cipher.rotate(stored)
    assert TokenCipher((new,)).decrypt_token(rotated) == _token()
    with pytest.raises(TokenDecryptError):
        TokenCipher((old,)).decrypt_token(rotated)


def test_reauth_marks_the_portal(rt, portal):
    DbTokenSource(rt, portal.id).mark_reauth_required("invalid_grant")
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).status == "needs_reauth"


def test_refresh_lock_is_exclusive_per_portal(rt, portal, make_portal):
    other = make_portal(slug="clinic-b")
    first, second, elsewhere = (
        DbTokenSource(rt, portal.id),
        DbTokenSource(rt, portal.id),
        DbTokenSource(rt, other.id),
    )
    with first.refresh_lock():
        with pytest.raises(RetryLater), second.refresh_lock(timeout=0.05):
            pass
        with elsewhere.refresh_lock(timeout=0.05):
            pass
    with second.refresh_lock(timeout=0.05):
        pass
