"""TECHX_GATEWAY_* settings are read typed and refused when malformed, like every setting."""

from __future__ import annotations

import pytest

from engine.commands.cli import _gateway_settings
from engine.errors import ConfigError
from engine.settings import GatewaySettings, Settings


def test_gateway_settings_have_safe_defaults() -> None:
    """Loopback only, a modest rate, keys trusted for 5 s, query keys allowed for browsers."""
    assert Settings.from_env({}).gateway == GatewaySettings()
    assert GatewaySettings().host == "127.0.0.1"


def test_gateway_settings_are_read() -> None:
    """Every variable arrives typed."""
    gateway = Settings.from_env(
        {
            "TECHX_GATEWAY_HOST": "0.0.0.0",
            "TECHX_GATEWAY_PORT": "9000",
            "TECHX_GATEWAY_RATE": "200",
            "TECHX_GATEWAY_BURST": "400",
            "TECHX_GATEWAY_KEY_CACHE_MS": "0",
            "TECHX_GATEWAY_QUERY_KEY": "off",
            "TECHX_GATEWAY_SOCKET_QUEUE": "50",
        }
    ).gateway
    assert gateway == GatewaySettings("0.0.0.0", 9000, 200, 400, 0, False, 50)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TECHX_GATEWAY_PORT", "http", "must be a whole number"),
        ("TECHX_GATEWAY_PORT", "70000", "must be at most 65535"),
        ("TECHX_GATEWAY_PORT", "-1", "must be at least 0"),
        ("TECHX_GATEWAY_RATE", "0", "must be at least 1"),
        ("TECHX_GATEWAY_BURST", "0", "must be at least 1"),
        ("TECHX_GATEWAY_KEY_CACHE_MS", "-5", "must be at least 0"),
        ("TECHX_GATEWAY_QUERY_KEY", "maybe", "must be true or false"),
        ("TECHX_GATEWAY_SOCKET_QUEUE", "0", "must be at least 1"),
        ("TECHX_GATEWAY_HOST", "", "must be a host name or an IP address"),
        ("TECHX_GATEWAY_HOST", "a b", "must be a host name or an IP address"),
        ("TECHX_GATEWAY_HOST", "http://x/", "must be a host name or an IP address"),
    ],
)
def test_a_bad_gateway_setting_is_refused_naming_it(
    variable: str, value: str, fragment: str
) -> None:
    """Each malformed value stops the start with a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=f"{variable} {fragment}"):
        Settings.from_env({variable: value})


def test_the_command_line_overrides_host_and_port_and_is_checked_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--host/--port win over the environment and get the same checks."""
    monkeypatch.setenv("TECHX_GATEWAY_PORT", "9000")
    monkeypatch.setenv("TECHX_GATEWAY_RATE", "7")
    settings = Settings.from_env()
    overridden = _gateway_settings(settings, "::1", 9100)
    assert (overridden.gateway.host, overridden.gateway.port) == ("::1", 9100)
    assert overridden.gateway.rate == 7
    assert _gateway_settings(settings, None, None).gateway.port == 9000
    with pytest.raises(ConfigError, match="TECHX_GATEWAY_PORT must be at most 65535"):
        _gateway_settings(settings, None, 100_000)
