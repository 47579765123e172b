"""Tokens sealed at rest: what is sealed opens only with the key that sealed it and under the same context,
keys rotate, and the key comes from the environment, a private key file, or (one node only) a generated file.
No error ever shows a key or a plaintext."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mcp_gateway.config_files import load_config
from mcp_gateway.oauth.vault import SECRET_KEY_ENV, Vault, VaultError, new_secret_key, parse_keys

SECRET = b'{"access_token": "at-very-secret", "refresh_token": "rt-very-secret"}'


def key_bytes(key: str) -> bytes:
    return base64.urlsafe_b64decode(key + "=")


def vault(*keys: str) -> Vault:
    return Vault([key_bytes(k) for k in keys])


def load(tmp_path: Path, env: dict[str, str] | None = None, key_file: Path | None = None,
         shared_store: bool = False) -> Vault:
    return Vault.load(env=env or {}, key_file=key_file, state_dir=tmp_path / "state", shared_store=shared_store)


def test_new_keys_are_32_random_bytes_in_unpadded_urlsafe_base64() -> None:
    keys = {new_secret_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) == 43 and "=" not in key and len(key_bytes(key)) == 32
        assert parse_keys(key, "x") == [key_bytes(key)] == parse_keys(key + "=", "x")


def test_a_sealed_value_opens_under_its_context_only() -> None:
    v = vault(new_secret_key())
    sealed = v.seal(SECRET, "grant:github:user:ann")
    assert SECRET not in sealed and b"at-very-secret" not in sealed
    assert v.open(sealed, "grant:github:user:ann") == SECRET
    assert v.seal(SECRET, "grant:github:user:ann") != sealed, "a fresh nonce every time"
    with pytest.raises(VaultError, match="another row"):
        v.open(sealed, "grant:github:user:bob")
    assert v.open(v.seal(b"", "c"), "c") == b""


@pytest.mark.parametrize("at", [0, 1, 5, 17, 30, -1])
def test_any_changed_byte_is_refused(at: int) -> None:
    v = vault(new_secret_key())
    sealed = bytearray(v.seal(SECRET, "c"))
    sealed[at] ^= 0x01
    with pytest.raises(VaultError):
        v.open(bytes(sealed), "c")


def test_a_value_sealed_with_an_unknown_key_or_cut_short_is_refused() -> None:
    sealed = vault(new_secret_key()).seal(SECRET, "c")
    with pytest.raises(VaultError, match="not among the 1 secret keys loaded"):
        vault(new_secret_key()).open(sealed, "c")
    with pytest.raises(VaultError, match="too short"):
        vault(new_secret_key()).open(sealed[:20], "c")


def test_keys_rotate_the_first_seals_and_every_one_opens() -> None:
    old, new = new_secret_key(), new_secret_key()
    before = vault(old).seal(SECRET, "c")
    rotated = vault(new, old)
    assert rotated.open(before, "c") == SECRET
    after = rotated.seal(SECRET, "c")
    assert vault(new).open(after, "c") == SECRET
    with pytest.raises(VaultError):
        vault(old).open(after, "c")
    env = {SECRET_KEY_ENV: f" {new} ,{old}\n"}
    assert Vault.load(env=env, key_file=None, state_dir=Path("/nonexistent"), shared_store=True).open(before, "c")


@pytest.mark.parametrize(("value", "problem"), [
    ("", "holds no secret key"),
    (" , ", "holds no secret key"),
    ("key+with/marks!", "is not URL-safe base64"),
    ("abc", "decodes to 2 bytes, not 32"),
    ("a" * 41, "its length is off"),
    ("A" * 44, "decodes to 33 bytes, not 32"),
    ("{good},{short}", "key 2 of 2 decodes to 24 bytes, not 32"),
])
def test_a_bad_key_in_the_environment_is_named_and_not_echoed(tmp_path: Path, value: str, problem: str) -> None:
    good, short = new_secret_key(), base64.urlsafe_b64encode(os.urandom(24)).decode()
    value = value.format(good=good, short=short)
    with pytest.raises(VaultError) as caught:
        load(tmp_path, env={SECRET_KEY_ENV: value})
    message = str(caught.value)
    assert message.startswith(SECRET_KEY_ENV) and problem in message
    for part in (good, short, value):
        assert len(part) < 3 or part not in message
    assert not (tmp_path / "state").exists(), "a bad key is an error, never a reason to generate one"


def test_a_key_file_holds_one_key_or_several(tmp_path: Path) -> None:
    old, new = new_secret_key(), new_secret_key()
    path = tmp_path / "key"
    path.write_text(f"{old}\n")
    path.chmod(0o600)
    sealed = load(tmp_path, key_file=path, shared_store=True).seal(SECRET, "c")
    path.write_text(f"{new}\n{old}\n\n")
    rotated = load(tmp_path, key_file=path, shared_store=True)
    assert rotated.open(sealed, "c") == SECRET and vault(new).open(rotated.seal(SECRET, "c"), "c") == SECRET
    assert load(tmp_path, env={SECRET_KEY_ENV: old}, key_file=path).open(sealed, "c"), "the environment comes first"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_open_to_other_users_is_refused(tmp_path: Path, mode: int) -> None:
    key = new_secret_key()
    path = tmp_path / "key"
    path.write_text(key)
    path.chmod(mode)
    with pytest.raises(VaultError) as caught:
        load(tmp_path, key_file=path)
    assert str(path) in str(caught.value) and f"chmod 600 {path}" in str(caught.value)
    assert key not in str(caught.value)


def test_a_missing_or_bad_key_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "key"
    with pytest.raises(VaultError, match=f"cannot read the key file {path}"):
        load(tmp_path, key_file=path)
    key = new_secret_key()
    path.write_text(key[:-2] + "!\n")
    path.chmod(0o600)
    with pytest.raises(VaultError) as caught:
        load(tmp_path, key_file=path)
    assert str(caught.value).startswith(f"{path} is not URL-safe base64") and key[:-2] not in str(caught.value)


def test_one_node_generates_a_private_key_file_once(tmp_path: Path) -> None:
    with capture_logs() as logs:
        first = load(tmp_path)
        again = load(tmp_path)
    path = tmp_path / "state" / "secret.key"
    assert (path.stat().st_mode & 0o777) == 0o600
    [created] = logs
    assert "created a secret key" in created["event"] and created["path"] == str(path)
    key = path.read_text().strip()
    assert key not in str(logs)
    assert again.open(first.seal(SECRET, "c"), "c") == SECRET
    assert path.read_text().strip() == key and sorted(os.listdir(path.parent)) == ["secret.key"]


def test_processes_starting_together_share_one_generated_key(tmp_path: Path) -> None:
    for round_ in range(10):
        state = tmp_path / str(round_)
        with capture_logs() as logs:
            vaults = load_together(state, 8)
        assert len(logs) == 1, "one of them made the key, the others read it"
        sealed = vaults[0].seal(SECRET, "c")
        assert all(v.open(sealed, "c") == SECRET for v in vaults)
        assert os.listdir(state) == ["secret.key"], "no temporary file is left behind"


def load_together(state: Path, n: int) -> list[Vault]:
    """`n` threads calling `Vault.load` on `state` at the same moment (as processes starting together would)."""
    start = threading.Barrier(n)
    vaults: list[Vault] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            vaults.append(Vault.load(env={}, key_file=None, state_dir=state, shared_store=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(vaults) == n
    return vaults


def test_replicas_without_a_key_are_refused(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match=f"set {SECRET_KEY_ENV} to the same value on every replica") as caught:
        load(tmp_path, shared_store=True)
    assert "mcp-gateway auth keygen" in str(caught.value)
    assert not (tmp_path / "state").exists()


def test_the_key_file_setting_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "gw.toml").write_text('[gateway]\nsecret_key_file = "keys/gw.key"\n')
    assert load_config(tmp_path / "conf" / "gw.toml").gateway.secret_key_file == str(tmp_path / "conf/keys/gw.key")
    (tmp_path / "conf" / "gw.toml").write_text('[gateway]\nsecret_key_file = "/etc/gw.key"\n')
    assert load_config(tmp_path / "conf" / "gw.toml").gateway.secret_key_file == "/etc/gw.key"
    (tmp_path / "conf" / "gw.toml").write_text("[gateway]\n")
    assert load_config(tmp_path / "conf" / "gw.toml").gateway.secret_key_file is None
