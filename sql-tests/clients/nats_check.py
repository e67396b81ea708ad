"""NATS JetStream end to end, against the real `sluice` binary and a real
`nats-server -js`: a NATS source -> EMBED (the bundled model) -> a NATS
sink, while the server is SIGKILLed at random moments and restarted. Every
input message must produce exactly one output message (counted by id).

Usage: nats_check.py SLUICE_BINARY PORT [KILLS]
"""

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import nats
import psycopg

from crash_check import start

MESSAGES = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nats(workdir):
    port = free_port()
    proc = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", os.path.join(workdir, "js")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nats-server did not start")


async def publish(url, first, count):
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="IN", subjects=["in.>"])
    for i in range(first, first + count):
        await js.publish("in.events", json.dumps({"id": i, "body": f"message number {i}"}).encode())
    await nc.close()


async def received(url):
    """Every message in the OUT stream: ids, and how many messages."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        info = await js.stream_info("OUT")
    except nats.js.errors.NotFoundError:
        await nc.close()
        return []
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await js.get_msg("OUT", seq)
        ids.append(json.loads(message.data)["id"])
    await nc.close()
    return ids


def connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="sluice", dbname="sluice", autocommit=True)


def main():
    if shutil.which("nats-server") is None:
        print("nats-server is not installed (scripts/install-deps.sh installs it)")
        sys.exit(1)
    binary, port = sys.argv[1], int(sys.argv[2])
    kills = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    rng = random.Random(int(os.environ.get("NATS_SEED", "577")))
    workdir = tempfile.mkdtemp(prefix="sluice-nats-")
    nats_proc, url = start_nats(workdir)
    log = open(os.path.join(workdir, "sluice.log"), "ab")
    data = os.path.join(workdir, "data")
    proc = None
    try:
        asyncio.run(publish(url, 1, MESSAGES // 3))
        proc = start(binary, port, data, log)
        with connect(port) as conn:
            conn.execute(f"""CREATE TABLE nats_in (id BIGINT, body TEXT) WITH ('connector' = 'nats',
                             'server' = '{url}', 'stream' = 'IN', 'subject' = 'in.>')""")
            conn.execute("SET barrier_interval_ms = 100")
            conn.execute("SET checkpoint_interval_ms = 300")
            conn.execute(f"""CREATE SINK nats_out AS
                             SELECT id, vector_dims(EMBED('minilm', body)) AS dims FROM nats_in
                             WITH ('connector' = 'nats', 'server' = '{url}', 'stream' = 'OUT', 'subject' = 'out')""")
        published = MESSAGES // 3
        for round_no in range(kills):
            if published < MESSAGES:
                batch = min(MESSAGES // 10, MESSAGES - published)
                asyncio.run(publish(url, published + 1, batch))
                published += batch
            time.sleep(rng.uniform(0.2, 1.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = start(binary, port, data, log)
        if published < MESSAGES:
            asyncio.run(publish(url, published + 1, MESSAGES - published))
        deadline = time.monotonic() + 180
        ids = []
        while time.monotonic() < deadline:
            with connect(port) as conn:
                conn.execute("CHECKPOINT")
            ids = asyncio.run(received(url))
            if len(set(ids)) >= MESSAGES:
                break
            time.sleep(0.5)
        # A last look after the rest has had time to (wrongly) arrive twice.
        time.sleep(1)
        ids = asyncio.run(received(url))
        duplicated, lost = len(ids) - len(set(ids)), MESSAGES - len(set(ids))
        print(f"  {kills} kills: {MESSAGES} messages in, {len(ids)} out, duplicated {duplicated}, lost {lost}")
        if duplicated or lost or set(ids) != set(range(1, MESSAGES + 1)):
            print(f"FAILED (logs in {workdir})")
            sys.exit(1)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        nats_proc.terminate()
        nats_proc.wait()


if __name__ == "__main__":
    main()
