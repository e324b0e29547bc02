"""Auth building blocks: the signature, the auth event, the nonce source and credentials that never show the secret."""
import json
import threading
import traceback

import pytest

from bfxsync.auth import (
    AUTH_ERROR_HINTS,
    MAX_NONCE,
    Credentials,
    MicrosecondNonce,
    auth_error_hint,
    auth_event,
    default_nonce,
    sign,
)

SECRET = "EXAMPLE_SECRET"
WORKED_SIG = "19a25a775f8fba56506ae296831f45090d634277c5ae3450c3490e5815d988dde8682c05eaa1292c8536e130ebc52906"
CREDS = Credentials("KEY-abcdefghijklmnop", SECRET)


class TestSign:
    def test_worked_signature(self):
        """The documented worked example: HMAC-SHA384 of AUTH<nonce>, lower-case hex."""
        assert sign(SECRET, "AUTH1700000000000000") == WORKED_SIG

    def test_is_96_lower_hex_chars(self):
        """SHA-384 gives 48 bytes, 96 lower-case hex characters."""
        sig = sign("s", "AUTH1")
        assert len(sig) == 96 and sig == sig.lower() and int(sig, 16) >= 0


class TestAuthEvent:
    def test_full_event_exact_json(self):
        """With dms and filters, the event matches the documented shape (authNonce a JSON number)."""
        event = auth_event(CREDS, 1700000000000000, dms=4, filters=["trading", "wallet", "notify"])
        assert json.dumps(event, separators=(",", ":")) == (
            '{"event":"auth","apiKey":"KEY-abcdefghijklmnop","authSig":"' + WORKED_SIG + '",'
            '"authPayload":"AUTH1700000000000000","authNonce":1700000000000000,"dms":4,'
            '"filter":["trading","wallet","notify"]}')

    def test_optional_keys_absent_by_default(self):
        """dms and filter are sent only when given; the secret is never part of the event."""
        event = auth_event(CREDS, 5)
        assert set(event) == {"event", "apiKey", "authSig", "authPayload", "authNonce"}
        assert SECRET not in json.dumps(event)

    @pytest.mark.parametrize("name", [
        "trading", "trading-tBTCUSD", "trading-tBTCF0:USTF0", "funding", "funding-fUSD", "wallet",
        "wallet-exchange-BTC", "wallet-margin-USTF0", "wallet-funding-USD", "algo", "balance", "notify",
    ])
    def test_known_filters(self, name):
        """Every documented filter, general and granular, is accepted."""
        assert auth_event(CREDS, 1, filters=[name])["filter"] == [name]

    @pytest.mark.parametrize("kwargs, fragment", [
        ({"nonce": 0}, "nonce"),
        ({"nonce": -1}, "nonce"),
        ({"nonce": MAX_NONCE + 1}, "nonce"),
        ({"nonce": True}, "nonce"),
        ({"nonce": "17"}, "nonce"),
        ({"nonce": 1.0}, "nonce"),
        ({"nonce": 1, "dms": 3}, "dms"),
        ({"nonce": 1, "dms": 0}, "dms"),
        ({"nonce": 1, "filters": ["bogus"]}, "unknown auth filter"),
        ({"nonce": 1, "filters": ["trading-BTCUSD"]}, "unknown auth filter"),
        ({"nonce": 1, "filters": ["funding-tBTCUSD"]}, "unknown auth filter"),
        ({"nonce": 1, "filters": ["wallet-spot-BTC"]}, "unknown auth filter"),
        ({"nonce": 1, "filters": [None]}, "unknown auth filter"),
        ({"nonce": 1, "filters": "trading"}, "not one string"),
        ({"nonce": 1, "filters": []}, "must not be empty"),
    ])
    def test_invalid_arguments(self, kwargs, fragment):
        """Bad nonces, dms values and filters are refused before anything is sent."""
        with pytest.raises(ValueError, match=fragment):
            auth_event(CREDS, **kwargs)

    def test_max_nonce_accepted(self):
        """MAX_NONCE itself (JS MAX_SAFE_INTEGER) is the largest accepted nonce."""
        assert auth_event(CREDS, MAX_NONCE)["authPayload"] == f"AUTH{MAX_NONCE}"


class TestCredentials:
    def test_repr_and_str_hide_the_secret(self):
        """repr and str show four characters of the key and never the secret."""
        for text in (repr(CREDS), str(CREDS), f"{CREDS}", repr([CREDS]), repr({"c": CREDS})):
            assert SECRET not in text and "KEY-" in text and "abcdefgh" not in text
        assert repr(CREDS) == "Credentials(api_key='KEY-…')"

    def test_traceback_with_credentials_never_shows_the_secret(self):
        """An exception carrying the credentials formats without the secret."""
        try:
            raise RuntimeError(CREDS)
        except RuntimeError:
            text = traceback.format_exc()
        assert SECRET not in text

    @pytest.mark.parametrize("key, secret", [("", "s3cr3t-value"), ("key", ""), ("key", "   "), (None, "s3cr3t-value")])
    def test_blank_fields_refused_without_echoing(self, key, secret):
        """Empty fields are refused; the message names the field, not the value."""
        with pytest.raises(ValueError) as info:
            Credentials(key, secret)
        assert "s3cr3t-value" not in str(info.value)

    def test_from_env(self):
        """from_env reads the two variables from the given mapping (default names BFX_API_KEY/BFX_API_SECRET)."""
        creds = Credentials.from_env(environ={"BFX_API_KEY": "k1234", "BFX_API_SECRET": "sec"})
        assert (creds.api_key, creds.api_secret) == ("k1234", "sec")
        creds = Credentials.from_env("MY_KEY", "MY_SECRET", environ={"MY_KEY": "a", "MY_SECRET": "b"})
        assert creds == Credentials("a", "b")

    @pytest.mark.parametrize("environ, missing", [
        ({"BFX_API_SECRET": "topsecret"}, "BFX_API_KEY"),
        ({"BFX_API_KEY": "thekeyvalue"}, "BFX_API_SECRET"),
        ({"BFX_API_KEY": "thekeyvalue", "BFX_API_SECRET": ""}, "BFX_API_SECRET"),
    ])
    def test_from_env_names_the_missing_variable_only(self, environ, missing):
        """A missing or empty variable is named; no value appears in the message."""
        with pytest.raises(ValueError, match=missing) as info:
            Credentials.from_env(environ=environ)
        assert "topsecret" not in str(info.value) and "thekeyvalue" not in str(info.value)

    def test_frozen(self):
        """Credentials are immutable."""
        with pytest.raises(AttributeError):
            CREDS.api_secret = "other"


class TestMicrosecondNonce:
    def test_microseconds_from_the_clock(self):
        """The nonce is the clock in microseconds."""
        assert MicrosecondNonce(clock=lambda: 1700000000.0)() == 1700000000000000

    def test_stuck_clock_still_increases(self):
        """Two calls within one microsecond still give increasing nonces."""
        nonce = MicrosecondNonce(clock=lambda: 1700000000.0)
        assert [nonce() for _ in range(3)] == [1700000000000000, 1700000000000001, 1700000000000002]

    def test_clock_going_backwards(self):
        """A clock stepped back (NTP) never makes the nonce go back."""
        times = iter([1700000010.0, 1700000000.0, 1699999000.0, 1700000020.0])
        nonce = MicrosecondNonce(clock=lambda: next(times))
        values = [nonce() for _ in range(4)]
        assert values == [1700000010000000, 1700000010000001, 1700000010000002, 1700000020000000]

    def test_refuses_past_max_nonce(self):
        """A nonce beyond MAX_NONCE is refused (the server would never accept it)."""
        nonce = MicrosecondNonce(clock=lambda: MAX_NONCE / 1e6 + 10)
        with pytest.raises(ValueError, match="exceed"):
            nonce()

    def test_advance_past(self):
        """advance_past raises the floor, for example after a 'nonce: small' reply."""
        nonce = MicrosecondNonce(clock=lambda: 1.0)
        nonce.advance_past(5_000_000_000)
        assert nonce() == 5_000_000_001 and nonce.last == 5_000_000_001
        nonce.advance_past(10)
        assert nonce() == 5_000_000_002

    def test_threads_get_unique_increasing_nonces(self):
        """Several threads hammering one source: all nonces unique, increasing within each thread."""
        nonce = MicrosecondNonce()
        per_thread = [[] for _ in range(8)]
        start = threading.Barrier(len(per_thread))

        def work(out):
            start.wait(5)
            for _ in range(3000):
                out.append(nonce())

        threads = [threading.Thread(target=work, args=(out,)) for out in per_thread]
        try:
            for t in threads:
                t.start()
        finally:
            for t in threads:
                t.join(30)
        assert not any(t.is_alive() for t in threads)
        for out in per_thread:
            assert len(out) == 3000 and all(a < b for a, b in zip(out, out[1:]))
        everything = [n for out in per_thread for n in out]
        assert len(set(everything)) == len(everything)

    def test_default_nonce_is_shared(self):
        """One default nonce source per process, strictly increasing."""
        assert isinstance(default_nonce, MicrosecondNonce)
        first, second = default_nonce(), default_nonce()
        assert second > first


class TestHints:
    def test_documented_codes(self):
        """10100 and 10114 carry the hints the client shows; unknown codes get a generic text."""
        assert AUTH_ERROR_HINTS[10100] == "bad API key or signature (check the key and secret)"
        assert AUTH_ERROR_HINTS[10114].startswith("nonce too small")
        assert {10111, 10112, 10113} <= set(AUTH_ERROR_HINTS)
        assert auth_error_hint(10114) == AUTH_ERROR_HINTS[10114]
        assert "12345" in auth_error_hint(12345) and "no error code" in auth_error_hint(None)

    def test_read_only(self):
        """The hint table cannot be changed by accident."""
        with pytest.raises(TypeError):
            AUTH_ERROR_HINTS[1] = "x"
