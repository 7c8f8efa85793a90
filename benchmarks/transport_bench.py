"""Engine-process transport microbenchmark (CPU only): the cost of moving one engine step's
output batch (B requests x 1 new token each) from a child process to the front end.

Compares pyzmq PUSH/PULL over ipc:// with msgspec msgpack and with pickle, against
multiprocessing Pipe and Queue (pickle). Prints messages/s and the median one-way latency of an
idle round trip (ping-pong / 2). Run: python benchmarks/transport_bench.py [--batch 256]."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import statistics
import tempfile
import time

N_MSGS = 2000


def batch(b: int) -> list:
    return [(f"cmpl-{i:024x}", [1234], None, False, None, None, 0, None, None) for i in range(b)]


def _zmq_sender(addr_out: str, addr_in: str, codec: str, b: int, n: int) -> None:
    import msgspec
    import zmq

    ctx = zmq.Context()
    out = ctx.socket(zmq.PUSH)
    out.connect(addr_out)
    inp = ctx.socket(zmq.PULL)
    inp.connect(addr_in)
    enc = msgspec.msgpack.Encoder().encode if codec == "msgspec" else pickle.dumps
    msg = batch(b)
    inp.recv()  # start
    for _ in range(n):
        out.send(enc(msg), copy=False)
    for _ in range(200):  # ping-pong
        inp.recv()
        out.send(enc(msg[:1]))
    out.close(linger=1000)


def run_zmq(codec: str, b: int) -> dict:
    import msgspec
    import zmq

    d = tempfile.mkdtemp()
    a_out, a_in = f"ipc://{d}/out", f"ipc://{d}/in"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.bind(a_out)
    push = ctx.socket(zmq.PUSH)
    push.bind(a_in)
    p = mp.get_context("spawn").Process(target=_zmq_sender, args=(a_out, a_in, codec, b, N_MSGS))
    p.start()
    dec = msgspec.msgpack.Decoder().decode if codec == "msgspec" else pickle.loads
    push.send(b"go")
    t0 = time.perf_counter()
    nbytes = 0
    for _ in range(N_MSGS):
        raw = pull.recv(copy=False)
        nbytes = len(raw.buffer)
        dec(raw.buffer)
    rate = N_MSGS / (time.perf_counter() - t0)
    lat = []
    for _ in range(200):
        t = time.perf_counter()
        push.send(b"p")
        dec(pull.recv())
        lat.append((time.perf_counter() - t) / 2)
    p.join()
    return {"msgs_per_s": rate, "one_way_us": statistics.median(lat) * 1e6, "bytes": nbytes}


def _pipe_sender(conn, b: int, n: int) -> None:
    msg = batch(b)
    conn.recv()
    for _ in range(n):
        conn.send(msg)
    for _ in range(200):
        conn.recv()
        conn.send(msg[:1])


def run_pipe(b: int) -> dict:
    ctx = mp.get_context("spawn")
    a, c = ctx.Pipe()
    p = ctx.Process(target=_pipe_sender, args=(c, b, N_MSGS))
    p.start()
    a.send("go")
    t0 = time.perf_counter()
    for _ in range(N_MSGS):
        a.recv()
    rate = N_MSGS / (time.perf_counter() - t0)
    lat = []
    for _ in range(200):
        t = time.perf_counter()
        a.send("p")
        a.recv()
        lat.append((time.perf_counter() - t) / 2)
    p.join()
    return {"msgs_per_s": rate, "one_way_us": statistics.median(lat) * 1e6,
            "bytes": len(pickle.dumps(batch(b)))}


def _queue_sender(q_out, q_in, b: int, n: int) -> None:
    msg = batch(b)
    q_in.get()
    for _ in range(n):
        q_out.put(msg)
    for _ in range(200):
        q_in.get()
        q_out.put(msg[:1])


def run_queue(b: int) -> dict:
    ctx = mp.get_context("spawn")
    q_out, q_in = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_queue_sender, args=(q_out, q_in, b, N_MSGS))
    p.start()
    q_in.put("go")
    t0 = time.perf_counter()
    for _ in range(N_MSGS):
        q_out.get()
    rate = N_MSGS / (time.perf_counter() - t0)
    lat = []
    for _ in range(200):
        t = time.perf_counter()
        q_in.put("p")
        q_out.get()
        lat.append((time.perf_counter() - t) / 2)
    p.join()
    return {"msgs_per_s": rate, "one_way_us": statistics.median(lat) * 1e6,
            "bytes": len(pickle.dumps(batch(b)))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 256])
    args = ap.parse_args()
    res = {"cpus": os.cpu_count()}
    for b in args.batch:
        res[f"batch{b}"] = {
            "zmq_ipc_msgspec": run_zmq("msgspec", b),
            "zmq_ipc_pickle": run_zmq("pickle", b),
            "mp_pipe_pickle": run_pipe(b),
            "mp_queue_pickle": run_queue(b),
        }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
