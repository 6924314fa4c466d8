"""bench/benchlib.py: what bench/boot, bench/nvme and bench/migrate share.

Where a benchmark is measured: `nvmevm probe` exit 0 means this host's /dev/kvm runs
Linux guests in hardware, and everything runs directly. Otherwise (no /dev/kvm, or
kvm_pvm) the script runs itself again inside ONE tests/sandbox/run.sh session (QEMU TCG
with nested SVM, whose /dev/kvm works) with --inner JSON; the inner run measures every
part and writes its data there (inside the repository: the sandbox's /tmp is private),
and the outer run prints the table and draws the chart.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SANDBOX_RUN = os.path.join(REPO, "tests/sandbox/run.sh")
SANDBOX_STALL_S = 180


def log(msg):
    print(msg, flush=True)


def warn(msg):
    print(f"bench: warning: {msg}", file=sys.stderr, flush=True)


def add_args(ap):
    ap.add_argument("--sandbox", action="store_true",
                    help="measure inside the QEMU TCG sandbox even if this host's /dev/kvm "
                         "runs Linux (default: only when `nvmevm probe` says it can't)")
    ap.add_argument("--sandbox-cpus", type=int, default=1, choices=(1, 2),
                    help="sandbox vCPUs (default 1; 2 is slower for 1-vCPU guests and "
                         "may soft-lock up)")
    ap.add_argument("--inner", metavar="JSON", help=argparse.SUPPRESS)


def probe(nvmevm):
    """(exit status, its one line) of `nvmevm probe`."""
    p = subprocess.run([nvmevm, "probe"], capture_output=True, text=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).strip().removeprefix("nvmevm: ")


def sandbox_label(cpus):
    return f"inside the QEMU TCG sandbox ({cpus} vCPU{'s' if cpus > 1 else ''}, nested KVM)"


def where(a, nvmevm):
    """Decides where to measure and says so in one line. Returns a dict for the JSON:
    mode "host" or "sandbox", label, reason, the probe result."""
    rc, msg = probe(nvmevm)
    w = {"probe": {"rc": rc, "message": msg}}
    if a.inner:  # the outer run has said where, and why
        if rc != 0:
            warn(f"inside the sandbox, nvmevm probe says: {msg}")
        return dict(mode="sandbox", label=sandbox_label(a.sandbox_cpus), reason=None,
                    sandbox_cpus=a.sandbox_cpus, inner_probe=w["probe"])
    if rc == 0 and not a.sandbox:
        w.update(mode="host", label="directly on this host's /dev/kvm", reason=msg)
        log(f"bench: measured directly on this host's /dev/kvm because: {msg}")
    else:
        reason = msg if rc != 0 else "--sandbox"
        w.update(mode="sandbox", label=sandbox_label(a.sandbox_cpus), reason=reason,
                 sandbox_cpus=a.sandbox_cpus)
        log(f"bench: measured inside the QEMU TCG sandbox ({a.sandbox_cpus} vCPU) "
            f"because: {reason}")
    return w


def run_inner(a, script, timeout, extra_args=(), disks=()):
    """Runs `script <this run's arguments> <extra_args> --inner J` inside one sandbox
    session (--cpus a.sandbox_cpus, --disk for each of disks). Its output streams
    through. Returns (data or None, sandbox exit status, wall seconds)."""
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    inner_json = os.path.join(HERE, "out", f".{os.path.basename(script)}-inner-{os.getpid()}.json")
    if os.path.exists(inner_json):
        os.unlink(inner_json)
    inner = [sys.executable, os.path.abspath(script)] + sys.argv[1:] + list(extra_args) + \
        ["--sandbox-cpus", str(a.sandbox_cpus), "--build-dir", a.build_dir, "--inner", inner_json]
    cmd = [SANDBOX_RUN, "--cpus", str(a.sandbox_cpus), "--timeout", str(int(timeout)),
           "--stall", str(SANDBOX_STALL_S)]
    for d in disks:
        cmd += ["--disk", d]
    cmd += ["--"] + inner
    log(f"bench: {shlex.join(cmd)}")
    t0 = time.monotonic()
    try:  # run.sh has its own --timeout; this is a backstop
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, cwd=REPO,
                            timeout=timeout + 120).returncode
    except subprocess.TimeoutExpired:
        rc = 124
    wall = time.monotonic() - t0
    if not os.path.exists(inner_json):
        warn(f"the sandbox run ended with status {rc} and no results")
        return None, rc, wall
    with open(inner_json) as f:
        data = json.load(f)
    os.unlink(inner_json)
    return data, rc, wall


def write_inner(path, data):
    """The inner run's result, for run_inner()."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# Facts for the JSON.


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def host_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "ncpus": os.cpu_count(), "kernel": platform.release(),
            "hostname": platform.node(), "loadavg": os.getloadavg()}


def version_of(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout \
            .strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def git_commit():
    """HEAD, with +dirty when tracked files outside bench/ were modified (the binaries were
    built from a modified tree)."""
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, timeout=20).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no",
                            "--", ".", ":!bench"], capture_output=True, text=True, timeout=20)
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def finish_meta(data, w, host, commit, sandbox_rc=None, sandbox_wall=None):
    """The outer run's facts: where it was measured, the real host (an inner run saw the
    sandbox's CPU and kernel; host = host_info() at the start), the git commit."""
    meta = data["meta"]
    if w["mode"] == "sandbox":
        w = dict(w, sandbox_host=meta.get("host"), sandbox_rc=sandbox_rc,
                 sandbox_wall_s=None if sandbox_wall is None else round(sandbox_wall, 1))
    meta["where"] = w
    meta["host"] = host
    meta["git_commit"] = commit
    return data
