#!/usr/bin/env python3
"""Writes fuzz/corpus/fuzz_nvme: small programs in fuzz_nvme.c's encoding that do what a
driver does (identify, queues, I/O, shadow doorbells, migration and reset mid-flight)."""
import os
import struct
import sys

OPS = ['REG_WRITE', 'REG_READ', 'CMD', 'DOORBELL', 'RING', 'REAP_CQ', 'PROCESS', 'STORAGE',
       'MEM_WRITE', 'QUEUE_PAIR', 'DBBUF', 'RESET', 'ENABLE', 'MIGRATE', 'MIGRATE_CORRUPT',
       'MSIX', 'STORAGE_ALL']
OP = {n: i for i, n in enumerate(OPS)}


def op(name, *fields):
    return bytes([OP[name]]) + b''.join(fields)


def u8(v):
    return struct.pack('<B', v)


def u16(v):
    return struct.pack('<H', v)


def u32(v):
    return struct.pack('<I', v)


def page(p):  # fix_ptr: page-aligned pointer into RAM page p
    return u8(0) + u8(p)


def cmd(q, opcode, nsid_sel, dws, prp1=None, prp2=None, cid=1):
    fix = (1 if prp1 is not None else 0) | (2 if prp2 is not None else 0)
    body = u8(q) + u8(opcode) + u8(0) + u16(cid) + u8(nsid_sel) + u8(fix)
    body += page(prp1) if prp1 is not None else struct.pack('<Q', 0)
    if prp2 is not None:
        body += page(prp2)
    body += b''.join(u32(d) for d in dws)
    return op('CMD', body)


def process(n=4):
    return op('PROCESS', u8(n - 1))


def reap(q, n=8):
    return op('REAP_CQ', u8(q | (n - 1) << 3))


def release(disk, idxs, fail=False):
    return op('STORAGE', u8(disk | (0x80 if fail else 0)), u8(len(idxs) - 1), bytes(idxs))


IDENT = lambda cns: cmd(0, 0x06, 0, [cns, 0, 0, 0, 0, 0], prp1=64)
WRITE = lambda slba, nlb, pg, cid=2: cmd(1, 0x01, 1, [slba, 0, nlb, 0, 0, 0], prp1=pg, cid=cid)
READ = lambda slba, nlb, pg, cid=3: cmd(1, 0x02, 1, [slba, 0, nlb, 0, 0, 0], prp1=pg, cid=cid)

seeds = {
    'identify': u8(0) + IDENT(1) + process() + reap(0) + IDENT(0) + process() + reap(0),
    'io_roundtrip': u8(0x10) + op('MEM_WRITE', page(80), u8(63), b'\xa5' * 64) +
    WRITE(0, 0, 80) + process() + release(0, [0]) + process() + reap(1) + READ(0, 0, 81) +
    process() + release(0, [0]) + process() + reap(1),
    'reorder': u8(0x10) + WRITE(0, 7, 80, 2) + WRITE(8, 7, 82, 3) + READ(0, 7, 84, 4) +
    process() + release(0, [2, 1, 0]) + process() + reap(1),
    'media_error': u8(0x10) + READ(0, 0, 80) + process() + release(0, [0], fail=True) +
    process() + reap(1),
    'shadow_doorbells': u8(0x10) + op('DBBUF') + WRITE(0, 0, 80) + op('RING', u8(1)) +
    process() + op('STORAGE_ALL') + reap(1),
    'migrate_inflight': u8(0x14) + WRITE(0, 3, 80) + READ(4, 3, 84) + process() +
    op('MIGRATE') + READ(0, 0, 90) + process() + op('STORAGE_ALL') + reap(1),
    'migrate_corrupt': u8(0x10) + IDENT(1) + process() + op('MIGRATE_CORRUPT', u8(0), u16(20),
                                                             u8(0x40)) + process() + reap(0),
    'reset_inflight': u8(0x10) + WRITE(0, 0, 80) + process() + op('RESET', u8(1)) +
    op('ENABLE', u8(0)) + release(0, [0]) + process() + op('ENABLE', u8(0)) + IDENT(1) +
    process() + reap(0),
    'shutdown': u8(0x10) + op('REG_WRITE', u8(4), u8(2), struct.pack('<Q', 1 | 6 << 16 | 4 << 20 | 1 << 14)) +
    process() + op('REG_READ', u8(5), u8(2)),
    'bad_doorbells': u8(0x10) + op('DOORBELL', u16(2), u32(5000)) + op('DOORBELL', u16(40), u32(1)) +
    process() + reap(0),
    'queue_pairs': u8(0) + op('QUEUE_PAIR', u8(0x81), u8(15)) + op('QUEUE_PAIR', u8(2), u8(3)) +
    op('MSIX', u8(1)) + cmd(2, 0x00, 5, [0] * 6) + process() + reap(2),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus', 'fuzz_nvme')
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
