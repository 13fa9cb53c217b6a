"""What AOSP's own adb tests (``tests/test_vdev_aosp.py``) found missing in the virtual device, one class per test.

Each test goes through Debian's real ``adb`` client and server, as AOSP's suite does.
"""

import hashlib
import os
import signal
import socket
import subprocess
import time

import pytest

from harness.testing.android.fixtures import adb_client, virtual_device, virtual_device_factory  # noqa: F401


@pytest.fixture
def connected(adb_client, virtual_device):  # noqa: F811
    assert adb_client.connect(virtual_device.address) == "device"
    yield virtual_device
    adb_client.run("disconnect", virtual_device.address)


def _wait_shell(adb_client, address, timeout_s):  # noqa: F811
    """Run ``echo back`` once the server has the device again, without any ``adb connect``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = adb_client.run("shell", "echo back", serial=address, timeout_s=10)
        if done.returncode == 0 and done.stdout == b"back\n":
            return True
        time.sleep(0.3)
    return False


def _go_offline(adb_client, device):  # noqa: F811
    device.go_offline(1.0)


def _reboot(adb_client, device):  # noqa: F811
    adb_client.run("reboot", serial=device.address, timeout_s=20)


def _reconnect_device(adb_client, device):  # noqa: F811
    """``adb reconnect device``: adbd drops the link (plain ``adb reconnect`` makes adb 29 forget TCP devices)."""
    assert adb_client.run("reconnect", "device", serial=device.address, timeout_s=20).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("drop", [_go_offline, _reboot, _reconnect_device], ids=["offline", "reboot", "reconnect"])
def test_the_real_server_gets_the_device_back_by_itself(adb_client, connected, drop):  # noqa: F811
    """The server's own reconnect (its CNXN has checksum 0 at version 0x01000001) must be accepted; no adb connect."""
    links = connected.links_accepted
    drop(adb_client, connected)
    time.sleep(1.5)
    assert _wait_shell(adb_client, connected.address, 30), connected.fault_log
    assert connected.links_accepted > links  # the server came back on a new link


def _adb(adb_client, device, *args):  # noqa: F811
    return [adb_client.adb, "-s", device.address, *args]


def test_a_hung_up_shell_gets_sighup_not_sigkill(adb_client, connected):  # noqa: F811
    log = "/data/local/tmp/hup.log"
    script = f"trap 'echo HUP > {log}; exit 0' SIGHUP; echo Waiting; read"
    proc = subprocess.Popen(_adb(adb_client, connected, "shell", script), env=adb_client.env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout.readline() == b"Waiting\n"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while not connected.host_path(log).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connected.host_path(log).read_text() == "HUP\n"


def test_exec_in_delivers_all_of_stdin_after_the_host_hangs_up(adb_client, connected, tmp_path):  # noqa: F811
    data = os.urandom(5 * 1024 * 1024)
    (tmp_path / "in.bin").write_bytes(data)
    with open(tmp_path / "in.bin", "rb") as source:
        done = subprocess.run(_adb(adb_client, connected, "exec-in", "cat > /data/local/tmp/in.bin"),
                              env=adb_client.env, stdin=source, capture_output=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    target = connected.host_path("/data/local/tmp/in.bin")
    deadline = time.monotonic() + 10  # cat may still be writing the tail when adb returns
    while target.stat().st_size < len(data) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_forward_reaches_a_device_listener_and_reverse_reaches_the_host(adb_client, connected):  # noqa: F811
    device_port = _free_port()
    listener = subprocess.Popen(_adb(adb_client, connected, "shell", f"echo from-device | nc -l -p {device_port}"),
                                env=adb_client.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)  # fmt: skip
    try:
        local = adb_client.run("forward", "tcp:0", f"tcp:{device_port}", serial=connected.address).stdout.strip()
        deadline, got = time.monotonic() + 10, b""
        while not got and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", int(local)), timeout=5) as sock:
                sock.sendall(b"from-host\n")
                got = sock.recv(100)
            time.sleep(0.1)
        assert got == b"from-device\n"
    finally:
        listener.kill()
        adb_client.run("forward", "--remove-all", serial=connected.address)
    with socket.socket() as host_listener:
        host_listener.bind(("127.0.0.1", 0))
        host_listener.listen(1)
        host_port = host_listener.getsockname()[1]
        done = adb_client.run("reverse", "tcp:0", f"tcp:{host_port}", serial=connected.address)
        device_side = int(done.stdout.strip())
        listed = adb_client.run("reverse", "--list", serial=connected.address).stdout.decode()
        assert f"tcp:{device_side} tcp:{host_port}" in listed
        adb_client.run("shell", f"echo via-reverse | nc 127.0.0.1 {device_side}", serial=connected.address, timeout_s=5)
        conn, _ = host_listener.accept()
        with conn:
            assert conn.recv(100) == b"via-reverse\n"
    adb_client.run("reverse", "--remove-all", serial=connected.address)


def test_forward_into_a_reverse_listener_echoes_every_time(adb_client, connected):  # noqa: F811
    """AOSP's ``test_forward_reverse_echo``, 25 times: host → forward → the device's reverse listener → host.

    The device used to send the reverse listener's ``OPEN`` before its ``OKAY`` for the forward, and the adb
    server then closed the forward without sending the client's bytes (about one run in four).
    """
    forward_port, reverse_port = _free_port(), _free_port()
    serial = connected.address
    assert adb_client.run("forward", f"tcp:{forward_port}", f"tcp:{forward_port}", serial=serial).returncode == 0
    assert adb_client.run("reverse", f"tcp:{forward_port}", f"tcp:{reverse_port}", serial=serial).returncode == 0
    echoed = []
    try:
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", reverse_port))
            listener.listen(4)
            listener.settimeout(10)
            for attempt in range(25):
                with socket.create_connection(("127.0.0.1", forward_port), timeout=10) as client:
                    server, _ = listener.accept()
                    with server:
                        server.settimeout(10)
                        client.sendall(b"hello %d" % attempt)
                        client.close()
                        echoed.append(server.makefile("rb").read())
    finally:
        adb_client.run("reverse", "--remove-all", serial=connected.address)
        adb_client.run("forward", "--remove-all", serial=connected.address)
    assert echoed == [b"hello %d" % attempt for attempt in range(25)]


def test_the_device_network_is_its_own_loopback(adb_client, connected):  # noqa: F811
    """A device listener is not a host port, and forwards never leave the device's loopback."""
    port = _free_port()
    serve = (f"python3 -c \"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
             f"print('ready', flush=True); time.sleep(30)\"")  # fmt: skip
    listener = subprocess.Popen(_adb(adb_client, connected, "shell", serve), env=adb_client.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert listener.stdout.readline() == b"ready\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        listener.kill()
    # adb's client refuses a host in `adb forward`; another host tool can still ask, so the device refuses too
    assert _open_service(adb_client, connected, "tcp:192.0.2.1:80") == b"FAIL"
    idle = _free_port()  # nothing listens there on the device: refused before OKAY, as adbd does
    assert _open_service(adb_client, connected, f"tcp:{idle}") == b"FAIL"


def _open_service(adb_client, device, service):  # noqa: F811
    """Open a device service through the server's smart socket; the server's 4-byte answer."""

    def request(sock, text):
        sock.sendall(b"%04x%s" % (len(text), text.encode()))
        return sock.recv(4)

    with socket.create_connection(("127.0.0.1", adb_client.server_port), timeout=10) as sock:
        assert request(sock, f"host:transport:{device.address}") == b"OKAY"
        return request(sock, service)


def test_android_shell_and_userland(adb_client, connected):  # noqa: F811
    script = (
        "trap 'echo hup' SIGHUP; kill -HUP $$; echo line | { read; echo \"got $REPLY\"; }; "
        "dd if=/dev/zero bs=1m count=2 status=none | wc -c; readlink /system/bin/ls; "
        "python3 -c 'print(6 * 7)'"
    )
    done = adb_client.run("shell", script, serial=connected.address)
    lines = done.stdout.decode().split()
    assert lines[:4] == ["hup", "got", "line", "2097152"], done
    assert lines[4].endswith("toybox") and lines[5] == "42", done


def test_pty_only_when_asked(adb_client, connected):  # noqa: F811
    def has_tty(*flags):
        return subprocess.run(_adb(adb_client, connected, "shell", *flags, "[ -t 0 ]"), env=adb_client.env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode == 0  # fmt: skip

    assert has_tty("-tt") and not has_tty("-T") and not has_tty()


def test_properties_and_read_only_system(adb_client, connected):  # noqa: F811
    run = lambda cmd: adb_client.run("shell", cmd, serial=connected.address)  # noqa: E731
    assert run("getprop init.svc.adbd").stdout == b"running\n"
    assert run("setprop foo.bar qux && getprop foo.bar").stdout == b"qux\n"
    assert connected.sandbox.properties()["foo.bar"] == "qux"
    assert run("setprop ro.serialno other").returncode != 0  # ro.* are set once
    touched = run("touch /system/planted")
    assert touched.returncode != 0 and b"Read-only file system" in touched.stderr
    assert not connected.host_path("/system/planted").exists()


def test_sync_sees_what_the_shell_sees(adb_client, connected, tmp_path):  # noqa: F811
    listing = adb_client.run("ls", "/", serial=connected.address).stdout.decode().split()
    assert {"data", "system", "sdcard", "etc", "proc"} <= set(listing)
    assert adb_client.run("pull", "/etc/hosts", str(tmp_path / "hosts"), serial=connected.address).returncode == 0
    shown = adb_client.run("shell", "cat /etc/hosts", serial=connected.address).stdout
    assert (tmp_path / "hosts").read_bytes() == shown
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "file").write_text("content")
    os.symlink("file", tree / "link")
    pushed = adb_client.run("push", str(tree), "/data/local/tmp/", serial=connected.address)
    assert pushed.returncode == 0, pushed.stderr
    assert adb_client.run("shell", "cat /data/local/tmp/tree/link", serial=connected.address).stdout == b"content"
    assert os.readlink(connected.host_path("/data/local/tmp/tree/link")) == "file"
    # a device symlink to an absolute device path means the device's file, not the host's /data
    adb_client.run("shell", "ln -s /data/local/tmp/tree/file /data/local/tmp/abs", serial=connected.address)
    pulled = adb_client.run("pull", "/data/local/tmp/abs", str(tmp_path / "abs"), serial=connected.address)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "abs").read_text() == "content"


def test_pull_honours_permission_bits_like_an_unprivileged_adbd(adb_client, connected, tmp_path):  # noqa: F811
    secret = "/data/local/tmp/secret"
    adb_client.run("shell", f"touch {secret} && chmod a-rwx {secret}", serial=connected.address)
    pulled = adb_client.run("pull", "/data/local/tmp/secret", str(tmp_path / "secret"), serial=connected.address)
    assert pulled.returncode != 0 and b"Permission denied" in pulled.stdout + pulled.stderr
