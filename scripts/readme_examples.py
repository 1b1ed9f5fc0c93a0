#!/usr/bin/env python3
"""Runs every grpcurl and CLI example of the README, as written, against
`serve --demo`, in the order the README gives them (they tell one on-call
story: find, pause, check, start, ...).

An example passes when it exits 0 and prints something other than `{}`;
one whose comment says `# error: REASON` must fail with that reason. The
placeholders `<nextPageToken>` and `<resumeToken>` are filled in from the
output of the examples before them. Streams (WatchConnectors, `connectors
watch`) run for a few seconds and must still be running, without error.

Usage: readme_examples.py BIN (the connector-control binary; grpcurl on
PATH). Exits non-zero, with what failed, if an example did not work.
"""

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
# The blocks run: the tour's, the grpcurl one, the CLI one (by their first line).
BLOCK_STARTS = (
    "connector-control connectors list                          # the fleet",
    "S=127.0.0.1:50051; C=connector.v1.ConnectorService",
    "connector-control connectors list orders",
)
STREAM_SECONDS = 4


def blocks(text):
    """The README's shell blocks that this runs, in order."""
    found = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [b for b in found if b.startswith(BLOCK_STARTS)]


def commands(block):
    """A block's commands: continuation lines and quoted newlines joined."""
    out, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending = f"{pending}\n{line}" if pending else line
        if pending.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:
            continue  # a quote is still open: the next line continues it
        out.append(pending)
        pending = ""
    return out


def expected_error(command):
    match = re.search(r"#\s*error:\s*([A-Z_]+)", command.splitlines()[-1])
    return match.group(1) if match else None


def start_demo(binary, work):
    log = open(os.path.join(work, "server.log"), "w+")
    env = dict(os.environ, RUST_LOG="info", NO_COLOR="1")
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [binary, "serve", "--demo", "--listen", "127.0.0.1:0", "--console-listen", "off",
         "--heartbeat-interval", "1s", "--data-file", os.path.join(work, "demo.db")],
        stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=work)
    deadline = time.time() + 60
    while time.time() < deadline:
        log.seek(0)
        match = re.search(r"serving gRPC addr=(\S+)", log.read())
        if match:
            return server, match.group(1), log
        if server.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    sys.exit(f"readme examples: the demo did not start:\n{log.read()}")


def run(command, env, stream):
    try:
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                              timeout=STREAM_SECONDS if stream else 60)
        return done.returncode, done.stdout + done.stderr, False
    except subprocess.TimeoutExpired as expired:
        out = (expired.stdout or b"") + (expired.stderr or b"")
        return None, out.decode() if isinstance(out, bytes) else out, True


def main():
    binary = os.path.abspath(sys.argv[1])
    text = open(README).read()
    work = tempfile.mkdtemp(prefix="cc-readme-")
    server, addr, log = start_demo(binary, work)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(binary) + os.pathsep + env["PATH"]
    env["CONNECTOR_CONTROL_SERVER"] = f"http://{addr}"
    env.pop("CONNECTOR_CONTROL_TOKEN", None)
    # The demo's agents online and its fleet running before the story starts.
    deadline = time.time() + 60
    while time.time() < deadline:
        agents = subprocess.run([binary, "agents", "list", "-o", "json"], env=env,
                                capture_output=True, text=True).stdout
        if agents.count("AGENT_STATE_ONLINE") == 4:
            break
        time.sleep(0.5)
    else:
        sys.exit("readme examples: the demo's four agents did not come online")
    tokens = {}
    passed, failed = 0, []
    try:
        for block in blocks(text):
            for command in commands(block):
                shown = command.replace("127.0.0.1:50051", addr)
                for name, value in tokens.items():
                    shown = shown.replace(f"<{name}>", value)
                if re.search(r"<[a-zA-Z]+>", shown):
                    failed.append((command, "a placeholder no earlier example filled in"))
                    continue
                if shown.startswith("S="):
                    # The block's variables: set for the examples after it.
                    for name, value in re.findall(r"(\w+)=(\S+?);?(?:\s|$)", shown):
                        env[name] = value.rstrip(";")
                    continue
                stream = "WatchConnectors" in shown or "connectors watch" in shown
                code, output, timed_out = run(shown, env, stream)
                for name in ("nextPageToken", "resumeToken"):
                    found = re.findall(rf'"{name}": "([^"]+)"', output)
                    if found:
                        tokens[name] = found[-1]
                error = expected_error(command)
                if stream:
                    ok = timed_out and not re.search(r"ERROR|Code: ", output)
                    why = "the stream ended or failed"
                elif error:
                    ok = code not in (0, None) and error in output
                    why = f"expected to fail with {error}"
                else:
                    ok = code == 0 and output.strip() not in ("", "{}")
                    why = "failed, or printed nothing but {}"
                if os.environ.get("VERBOSE"):
                    first = output.strip().splitlines()[:1]
                    print(f"[{'ok' if ok else 'FAIL'} exit {code}] {shown.splitlines()[0][:100]}\n"
                          f"    {first[0][:100] if first else ''}")
                if ok:
                    passed += 1
                else:
                    failed.append((command, f"{why} (exit {code}):\n{output.strip()[:2000]}"))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"readme examples: {passed} passed, {len(failed)} failed")
    for command, why in failed:
        print(f"\n--- {command}\n{why}")
    if failed:
        log.seek(0)
        print("\n--- server log (tail):\n" + "".join(log.readlines()[-40:]))
        sys.exit(1)


if __name__ == "__main__":
    main()
