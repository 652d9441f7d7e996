"""The gateway's seen-nonce cache lives in the gateway's database, on the store's engine."""

from __future__ import annotations

import os

import pytest

from nox.crypto.exceptions import ReplayedNonce
from nox.crypto.replay import SqlReplayCache
from nox.gateway.store import HandleStore, StoreSettings, current_revision, head_revision


def test_replay_cache_shares_the_store_engine(settings: StoreSettings) -> None:
    store = HandleStore.open(settings)
    try:
        cache = SqlReplayCache(store.engine)
        signer, nonce = os.urandom(20), os.urandom(32)
        cache.check_and_record(signer, nonce, 2_000, 1_000)
        with pytest.raises(ReplayedNonce):
            cache.check_and_record(signer, nonce, 2_000, 1_000)
        cache.check_and_record(signer, os.urandom(32), 2_000, 1_000)
    finally:
        store.close()

    reopened = HandleStore.open(settings)  # the nonces survive, the migrations ignore them
    try:
        assert current_revision(reopened.engine) == head_revision()
        with pytest.raises(ReplayedNonce):
            SqlReplayCache(reopened.engine).check_and_record(signer, nonce, 2_000, 1_001)
    finally:
        reopened.close()
