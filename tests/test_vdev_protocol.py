"""Virtual device: the message codec and RSA token verification, against adb-shell's own host side."""

import base64
import struct

import pytest
from adb_shell import adb_message
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner
from hypothesis import given
from hypothesis import strategies as st

from harness.testing.android import codec
from harness.testing.android.auth import AuthMode, KeyPolicy, decode_public_key, new_token, verify_token_signature

commands = st.sampled_from([codec.CNXN, codec.AUTH, codec.OPEN, codec.OKAY, codec.CLSE, codec.WRTE])
u32 = st.integers(0, 0xFFFFFFFF)


@given(commands, u32, u32, st.binary(max_size=300))
def test_pack_matches_adb_shell_and_roundtrips(command, arg0, arg1, data):
    packed = codec.Message(command, arg0, arg1, data).pack()
    theirs = adb_message.AdbMessage(command.to_bytes(4, "little"), arg0, arg1, data)
    assert packed == theirs.pack() + data
    header = codec.unpack_header(packed[: codec.HEADER_SIZE])
    assert (header.command, header.arg0, header.arg1, header.data_length) == (command, arg0, arg1, len(data))
    codec.verify_payload(header, packed[codec.HEADER_SIZE :], codec.VERSION_CHECKSUMMED)


def test_corrupted_checksum_is_detected_only_on_the_checksummed_version():
    packed = codec.Message(codec.WRTE, 1, 2, b"payload").pack(corrupt_checksum=True)
    header = codec.unpack_header(packed[:24])
    with pytest.raises(codec.ProtocolError, match="checksum"):
        codec.verify_payload(header, b"payload", codec.VERSION_CHECKSUMMED)
    codec.verify_payload(header, b"payload", codec.VERSION_SKIP_CHECKSUM)


@given(st.binary(min_size=24, max_size=24))
def test_random_headers_never_raise_anything_but_protocol_error(raw):
    try:
        codec.unpack_header(raw)
    except codec.ProtocolError:
        pass


def test_bad_magic_and_oversized_payload_are_refused():
    good = codec.Message(codec.OPEN, 1, 0, b"shell:ls\0").pack()[:24]
    bad_magic = good[:20] + b"\0\0\0\0"
    with pytest.raises(codec.ProtocolError, match="magic"):
        codec.unpack_header(bad_magic)
    huge = struct.pack("<6I", codec.WRTE, 1, 1, 10_000_000, 0, codec.WRTE ^ 0xFFFFFFFF)
    with pytest.raises(codec.ProtocolError, match="maxdata"):
        codec.unpack_header(huge)


def test_banner_lists_identity_and_features_and_host_banner_parses():
    banner = codec.banner({"ro.product.model": "Virtual Device", "ro.product.name": "n"}, ["shell_v2", "cmd"])
    assert banner.startswith(b"device::ro.product.name=n;ro.product.model=Virtual Device;")
    assert b"features=shell_v2,cmd" in banner
    kind, features = codec.parse_host_banner(b"host::features=shell_v2,stat_v2\0")
    assert kind == "host" and features == {"shell_v2", "stat_v2"}
    assert codec.parse_host_banner(b"\xff\xfe garbage")[1] == frozenset()


@pytest.fixture(scope="module")
def host_key(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "adbkey"
    keygen(str(path))
    assert (path.stat().st_mode & 0o777) in (0o600, 0o644)  # created by adb-shell, not by us
    return path


def test_signatures_made_by_adb_shell_verify_and_tampering_fails(host_key):
    signer = PythonRSASigner.FromRSAKeyPath(str(host_key))
    public = decode_public_key(signer.GetPublicKey())
    token = new_token()
    signature = signer.Sign(token)
    assert verify_token_signature(public, token, signature)
    assert not verify_token_signature(public, new_token(), signature)
    assert not verify_token_signature(public, token, signature[:-1] + bytes([signature[-1] ^ 1]))


def test_key_policy_modes(host_key, tmp_path):
    pub_text = (host_key.parent / "adbkey.pub").read_text()
    other = tmp_path / "other"
    keygen(str(other))
    other_text = (tmp_path / "other.pub").read_text()

    listed = KeyPolicy.from_files(AuthMode.KEYS, [host_key.parent / "adbkey.pub"])
    assert listed.offer(pub_text.encode() + b"\0")
    assert not listed.offer(other_text.encode())

    anyone = KeyPolicy(AuthMode.ANY)
    assert anyone.offer(other_text.encode()) and len(anyone.accepted) == 1

    rejecting = KeyPolicy(AuthMode.REJECT, list(listed.accepted))
    signer = PythonRSASigner.FromRSAKeyPath(str(host_key))
    token = new_token()
    assert not rejecting.signature_ok(token, signer.Sign(token))
    assert listed.signature_ok(token, signer.Sign(token))
    assert not anyone.offer(b"not base64 !!")


def test_malformed_public_keys_raise_value_error():
    with pytest.raises(ValueError):
        decode_public_key("@@@@")
    with pytest.raises(ValueError):
        decode_public_key(base64.b64encode(struct.pack("<II", 64, 0)).decode())
