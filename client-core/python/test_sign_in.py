#!/usr/bin/env python3
"""Signs in and exchanges an encrypted message through the generated Python bindings against a
real `juntos all`.

Environment:
  JUNTOS_PY_BINDINGS  directory holding juntos_client.py and libjuntos_client.so (uniffi-bindgen output)
  JUNTOS_BIN          the built `juntos` server binary

Exits 0 on success; otherwise prints what failed and exits 1.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PHONE = "+12015550123"  # 201 is a New Jersey area code; 555-01xx lines are fictional.
OTHER_PHONE = "+12015550124"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def env_path(name):
    value = os.environ.get(name)
    if not value:
        raise Failure(f"set {name} (see the header of {os.path.basename(__file__)})")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, server, log_path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failure(f"juntos exited with {server.returncode}; log:\n{read(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise Failure(f"juntos did not listen on port {port} within {timeout:.0f} s; log:\n{read(log_path)}")


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def last_code(data_dir, phone, timeout=10.0):
    """The code in the last SMS sent to `phone` (from <data-dir>/sms-outbox.jsonl)."""
    outbox = os.path.join(data_dir, "sms-outbox.jsonl")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(outbox):
            with open(outbox, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f if line.strip()]
            mine = [m for m in lines if m.get("to") == phone]
            if mine:
                match = re.search(r"\b(\d{6})\b", mine[-1]["body"])
                check(match is not None, "the last SMS has no 6-digit code")
                return match.group(1)
        time.sleep(0.1)
    raise Failure(f"no SMS for the test number in {outbox}")


async def scenario(juntos_client, url, data_dir, homes):
    ClientError = juntos_client.ClientError

    client = juntos_client.Client(url, os.path.join(homes, "first"))
    check(not client.is_signed_in(), "a fresh client is signed out")

    sent = await client.request_code(PHONE)
    check(sent.code_length == 6, f"code_length {sent.code_length}")
    check(sent.expires_in_seconds > 0, f"expires_in_seconds {sent.expires_in_seconds}")
    code = last_code(data_dir, PHONE)

    account = await client.sign_in(PHONE, code, "python test")
    check(account.new_account, "the first sign-in creates the account")
    check(client.is_signed_in(), "signed in after sign_in")
    session = client.session()
    check(session is not None and session.user_id == account.user_id, "session() names the account")
    check(session.device_id == account.device_id, "session() names the device")

    me = await client.me()
    check(me.user_id == account.user_id, f"me.user_id {me.user_id!r} != {account.user_id!r}")
    check(me.device_id == account.device_id, f"me.device_id {me.device_id!r} != {account.device_id!r}")
    check(me.phone == PHONE, "me.phone is the number signed in with")
    check(any(d.device_id == account.device_id for d in me.devices), "this device is in me.devices")

    # A second request for another number, answered with a wrong code.
    other = juntos_client.Client(url, os.path.join(homes, "second"))
    await other.request_code(OTHER_PHONE)
    right = last_code(data_dir, OTHER_PHONE)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    try:
        await other.sign_in(OTHER_PHONE, wrong, "python test 2")
    except ClientError.WrongCode as e:
        check(e.attempts_left == 4, f"attempts_left {e.attempts_left}, expected 4")
    else:
        raise Failure("a wrong code signed in")
    check(not other.is_signed_in(), "a wrong code leaves the client signed out")
    # The code survives a wrong try (4 left), so the right one still signs in.
    await other.sign_in(OTHER_PHONE, right, "python test 2")

    # An encrypted message, received through a listener implemented in Python.
    received = asyncio.Queue()
    loop = asyncio.get_running_loop()

    class Listener(juntos_client.EventListener):
        def on_event(self, event):
            # Called on a library thread: hand it to the event loop.
            loop.call_soon_threadsafe(received.put_nowait, event)

    await other.start(Listener())
    message = await client.send_text(OTHER_PHONE, "hello from python")
    check(await client.flush_outbox() == 0, "the outbox drained")
    deadline = time.monotonic() + 20
    while True:
        check(time.monotonic() < deadline, "the message did not arrive within 20 s")
        try:
            event = await asyncio.wait_for(received.get(), timeout=1)
        except asyncio.TimeoutError:
            continue
        if event.is_message_received():
            break
    got = event.message
    check(got.message_id == message.message_id, "the received message has the sent id")
    check(got.body == "hello from python", "the text arrived intact")
    check(got.sender_user_id == account.user_id and not got.outgoing, "it is from the first account")
    other.stop()
    history = await other.history(account.user_id, 10)
    check([m.body for m in history] == ["hello from python"], "the history holds it")

    await client.sign_out()
    check(not client.is_signed_in(), "signed out after sign_out")
    try:
        await client.me()
    except ClientError.NotSignedIn:
        pass
    else:
        raise Failure("me() worked after sign_out")


def main():
    bindings = env_path("JUNTOS_PY_BINDINGS")
    juntos_bin = env_path("JUNTOS_BIN")
    check(os.path.exists(os.path.join(bindings, "juntos_client.py")), f"no juntos_client.py in {bindings}")
    check(os.access(juntos_bin, os.X_OK), f"JUNTOS_BIN {juntos_bin} is not an executable")
    sys.path.insert(0, bindings)
    import juntos_client

    work = tempfile.mkdtemp(prefix="juntos-py-")
    data_dir = os.path.join(work, "data")
    log_path = os.path.join(work, "juntos.log")
    port = free_port()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [juntos_bin, "all", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    ok = False
    try:
        wait_for_port(port, server, log_path)
        asyncio.run(scenario(juntos_client, f"http://127.0.0.1:{port}", data_dir, os.path.join(work, "homes")))
        ok = True
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"(server log and data kept in {work})", file=sys.stderr)
    print("python sign-in and messaging test: ok")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # an unexpected ClientError or a bug: still one clear line
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
