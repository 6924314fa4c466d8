#!/usr/bin/env python3
"""A stand-in for a VM's control socket, so client behaviour is tested without KVM.

usage: fake_control.py SOCKET MODE
  silent: accepts and never answers (a client must time out)
  vm:     a greeting and an event before each reply; status says running;
          migrate-cancel is refused as the real server does with no migration running;
          quit answers and ends the stand-in
Prints "ready" once listening.
"""
import json
import os
import socket
import sys
import threading


def serve(conn, mode, done):
    if mode == "silent":
        conn.recv(65536)
        done.wait(600)
        return
    f = conn.makefile("rwb")
    f.write(b'{"greeting":{"version":"0.1.0","protocol":1,"vm":"fake","pid":%d,'
            b'"capabilities":["events","migrate"]}}\n' % os.getpid())
    f.flush()
    for line in f:
        req = json.loads(line)
        cmd = req.get("cmd", req.get("execute"))
        # An event between the request and its reply: clients must skip it.
        f.write(b'{"event":"RESET","data":{"source":"test"},'
                b'"timestamp":{"seconds":1,"microseconds":0}}\n')
        if cmd == "status":
            rep = {"ok": True, "state": "running", "pid": os.getpid()}
        elif cmd == "migrate-cancel":
            rep = {"ok": False, "error": {"class": "InvalidState",
                                          "desc": "no migration is running"}}
        elif cmd == "quit":
            rep = {"ok": True, "state": "stopping"}
        else:
            rep = {"ok": False, "error": {"class": "CommandNotFound", "desc": "unknown"}}
        if "id" in req:
            rep["id"] = req["id"]
        f.write(json.dumps(rep).encode() + b"\n")
        f.flush()
        if cmd == "quit":
            done.set()
            return


def main():
    path, mode = sys.argv[1], sys.argv[2]
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)
    print("ready", flush=True)
    done = threading.Event()
    srv.settimeout(0.2)
    while not done.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn, mode, done), daemon=True).start()
    os.unlink(path)


main()
