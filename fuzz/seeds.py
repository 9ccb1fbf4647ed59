#!/usr/bin/env python3
"""seeds.py: write the fuzz corpus seeds (fuzz/corpus/<harness>/) from the wire layouts
(runtime/gate.h, runtime/ctrl.h, transport/tcp.c). Run it after a layout changes; the
seeds are committed, and libFuzzer grows its own corpus from them in a scratch folder."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def put(name, i, data):
    d = os.path.join(here, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, 'seed%02d' % i), 'wb') as f:
        f.write(data)


ids = [b'loom1:127.0.0.1:29500:00112233445566778899aabbccddeeff',
       b'loom1:[::1]:1:ffeeddccbbaa99887766554433221100',
       b'loom1:[fe80::1%1]:65535:0123456789abcdef0123456789ABCDEF',
       b'loom1:10.0.0.1:0:00112233445566778899aabbccddeeff']
for i, s in enumerate(ids):
    put('id', i, s)

challenge = struct.pack('<II16s', 0x48434d4c, 2, bytes(range(16)))
hello = struct.pack('<IIiiiI8s16s32s', 0x4c484d4c, 16, 1, -1, 2, 200, bytes(8), bytes(16), bytes(32))
verdict_ok = struct.pack('<IiII32s', 0x44564d4c, 0, 0, 0, bytes(32))
verdict_no = struct.pack('<IiII32s', 0x44564d4c, 3, 12, 0, bytes(32)) + b'wrong secret'
put('gate', 0, b'\x00' + hello + bytes(200))                 # acceptor: a hello, wrong mac
put('gate', 1, b'\x00' + hello[:40])                         # acceptor: cut short
put('gate', 2, b'\x01' + challenge + verdict_ok)             # connector: a forged admission
put('gate', 3, b'\x01' + challenge + verdict_no)             # connector: a refusal


def frame(t, code, text=b''):
    return struct.pack('<IIiI', 0x54434d4c, t, code, len(text)) + text


put('ctrl', 0, b'\x05' + frame(1, 0) + frame(2, 1))
put('ctrl', 1, b'\x01' + frame(3, 5, b'rank 2 failed: timed out') + frame(1, 0))
put('ctrl', 2, b'\x10' + frame(4, 1) + frame(5, 0) + frame(2, 0))

def msg(payload, kind=0x10203, count=7, seq=1, root=-1):
    return struct.pack('<IIQIi', len(payload), kind, count, seq, root) + payload

put('tcp', 0, b'\x00' + msg(b'x' * 64) + msg(b'') + msg(bytes(range(40))))
put('tcp', 1, b'\x05' + msg(b'y' * 128) * 5)
put('tcp', 2, b'\x00' + msg(b'z' * 65))                      # too big for a 64-byte slot

env = [(3, b'600000'), (8, b'16'), (9, b'128K'), (7, b'AF_INET6'), (6, b'^docker,lo'), (22, b'loom1:1.2.3.4:5:' + b'a' * 32),
       (1, b'^NET,SHM'), (23, b'[::1]:29500')]
for i, (k, v) in enumerate(env):
    put('env', i, bytes([k]) + v)
