#!/usr/bin/env python3
"""A tracing TCP proxy for the PostgreSQL wire protocol (a debugging aid, not a test).

    python3 tests/clients/pgtrace.py LISTEN_PORT SERVER_PORT [LOGFILE]

Point a client at LISTEN_PORT; every frontend message (Query, Parse, Bind, Describe,
Execute, Close, Sync, COPY data ...) and the interesting backend answers (RowDescription,
CommandComplete, ErrorResponse, CopyIn/OutResponse, PortalSuspended ...) are written, one
line each, to LOGFILE (default: stderr). It is how the failures reported by the client
tests are pinned to the exact statement and protocol step a client sent.
Standard library only.
"""
import asyncio
import itertools
import struct
import sys
import time

LOG = sys.stderr
_conn_ids = itertools.count(1)


def log(cid, direction, text):
    LOG.write(f"{time.strftime('%H:%M:%S')} c{cid} {direction} {text}\n")
    LOG.flush()


def cstr(buf, pos):
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8", "replace"), end + 1


def short(b, n=60):
    if b is None:
        return "NULL"
    try:
        s = b.decode("utf-8")
        s = repr(s)
    except UnicodeDecodeError:
        s = "0x" + b.hex()
    return s if len(s) <= n else s[:n] + "..."


def describe_frontend(t, body):
    if t == "Q":
        return "Query " + cstr(body, 0)[0]
    if t == "P":
        name, p = cstr(body, 0)
        query, p = cstr(body, p)
        (n,) = struct.unpack_from("!h", body, p)
        oids = struct.unpack_from(f"!{n}i", body, p + 2)
        return f"Parse stmt={name!r} types={list(oids)} sql={query}"
    if t == "B":
        portal, p = cstr(body, 0)
        stmt, p = cstr(body, p)
        (nf,) = struct.unpack_from("!h", body, p)
        fmts = struct.unpack_from(f"!{nf}h", body, p + 2)
        p += 2 + 2 * nf
        (np,) = struct.unpack_from("!h", body, p)
        p += 2
        params = []
        for _ in range(np):
            (ln,) = struct.unpack_from("!i", body, p)
            p += 4
            if ln < 0:
                params.append(None)
            else:
                params.append(body[p : p + ln])
                p += ln
        (nr,) = struct.unpack_from("!h", body, p)
        rfmts = struct.unpack_from(f"!{nr}h", body, p + 2)
        return (
            f"Bind portal={portal!r} stmt={stmt!r} param_formats={list(fmts)} "
            f"params=[{', '.join(short(x, 40) for x in params)}] result_formats={list(rfmts)}"
        )
    if t == "D":
        kind = chr(body[0])
        return f"Describe {'statement' if kind == 'S' else 'portal'} {cstr(body, 1)[0]!r}"
    if t == "E":
        portal, p = cstr(body, 0)
        (maxrows,) = struct.unpack_from("!i", body, p)
        return f"Execute portal={portal!r} max_rows={maxrows}"
    if t == "C":
        kind = chr(body[0])
        return f"Close {'statement' if kind == 'S' else 'portal'} {cstr(body, 1)[0]!r}"
    if t == "S":
        return "Sync"
    if t == "H":
        return "Flush"
    if t == "d":
        return f"CopyData {short(bytes(body), 80)}"
    if t == "c":
        return "CopyDone"
    if t == "f":
        return "CopyFail " + cstr(body, 0)[0]
    if t == "X":
        return "Terminate"
    if t == "p":
        return "Password/SASL"
    return f"msg {t!r} len={len(body)}"


ERR_FIELDS = {"S": "sev", "V": "sev", "C": "code", "M": "msg", "D": "detail", "H": "hint", "P": "pos"}


def describe_backend(t, body):
    if t in ("E", "N"):
        fields, p = {}, 0
        while body[p] != 0:
            code = chr(body[p])
            val, p = cstr(body, p + 1)
            if code in ERR_FIELDS:
                fields[ERR_FIELDS[code]] = val
        return ("ERROR " if t == "E" else "NOTICE ") + " ".join(f"{k}={v!r}" for k, v in fields.items())
    if t == "C":
        return "CommandComplete " + cstr(body, 0)[0]
    if t == "T":
        (n,) = struct.unpack_from("!h", body, 0)
        p, cols = 2, []
        for _ in range(n):
            name, p = cstr(body, p)
            _tbl, _att, oid, _sz, _mod, fmt = struct.unpack_from("!ihihih", body, p)
            p += 18
            cols.append(f"{name}:{oid}{'/bin' if fmt else ''}")
        return "RowDescription " + ", ".join(cols)
    if t == "t":
        (n,) = struct.unpack_from("!h", body, 0)
        return f"ParameterDescription {list(struct.unpack_from(f'!{n}i', body, 2))}"
    if t == "G":
        return f"CopyInResponse format={body[0]}"
    if t == "H":
        return f"CopyOutResponse format={body[0]}"
    if t == "s":
        return "PortalSuspended"
    if t == "I":
        return "EmptyQueryResponse"
    if t == "n":
        return "NoData"
    if t == "1":
        return "ParseComplete"
    if t == "2":
        return "BindComplete"
    if t == "3":
        return "CloseComplete"
    if t == "Z":
        return f"ReadyForQuery {chr(body[0])}"
    if t == "R":
        return f"Auth {struct.unpack_from('!i', body, 0)[0]}"
    if t == "S":
        k, p = cstr(body, 0)
        return f"ParameterStatus {k}={cstr(body, p)[0]}"
    if t == "d":
        return None  # copy data rows: counted, not printed
    if t == "D":
        return None  # data rows: counted, not printed
    if t == "c":
        return "CopyDone"
    return f"msg {t!r} len={len(body)}"


async def pump(cid, reader, writer, frontend, state):
    buf = bytearray()
    rows = 0
    startup_done = False
    while True:
        data = await reader.read(65536)
        if not data:
            break
        buf += data
        while True:
            if frontend and not startup_done:
                if len(buf) < 4:
                    break
                (ln,) = struct.unpack_from("!i", buf, 0)
                if len(buf) < ln:
                    break
                (code,) = struct.unpack_from("!i", buf, 4)
                if code in (80877103, 80877104):
                    state["single"] += 1
                    log(cid, ">", "SSLRequest" if code == 80877103 else "GSSENCRequest")
                elif code == 80877102:
                    log(cid, ">", "CancelRequest")
                    startup_done = True
                else:
                    parts = bytes(buf[8:ln]).split(b"\0")
                    kv = dict(zip(parts[0::2], parts[1::2]))
                    log(cid, ">", "Startup " + " ".join(f"{k.decode()}={v.decode()}" for k, v in kv.items() if k))
                    startup_done = True
                del buf[:ln]
                continue
            if not frontend and state["single"] > 0:
                if len(buf) < 1:
                    break
                log(cid, "<", f"SSL/GSS answer {chr(buf[0])!r}")
                state["single"] -= 1
                del buf[:1]
                continue
            if len(buf) < 5:
                break
            t = chr(buf[0])
            (ln,) = struct.unpack_from("!i", buf, 1)
            if len(buf) < 1 + ln:
                break
            body = bytes(buf[5 : 1 + ln])
            del buf[: 1 + ln]
            try:
                text = describe_frontend(t, body) if frontend else describe_backend(t, body)
            except Exception as e:  # a decoding bug must not break the session being traced
                text = f"msg {t!r} (undecodable: {e})"
            if not frontend and t in ("D", "d"):
                rows += 1
                continue
            if not frontend and rows:
                log(cid, "<", f"({rows} DataRow/CopyData)")
                rows = 0
            if text is not None and not (not frontend and t in ("S", "R", "K")):
                log(cid, ">" if frontend else "<", text)
        writer.write(data)
        await writer.drain()
    try:
        writer.close()
    except Exception:
        pass


async def handle(client_r, client_w, server_port):
    cid = next(_conn_ids)
    server_r, server_w = await asyncio.open_connection("127.0.0.1", server_port)
    state = {"single": 0}
    await asyncio.gather(
        pump(cid, client_r, server_w, True, state),
        pump(cid, server_r, client_w, False, state),
        return_exceptions=True,
    )
    log(cid, "-", "closed")


async def main():
    global LOG
    listen, server = int(sys.argv[1]), int(sys.argv[2])
    if len(sys.argv) > 3:
        LOG = open(sys.argv[3], "a", buffering=1)
    srv = await asyncio.start_server(lambda r, w: handle(r, w, server), "127.0.0.1", listen)
    print(f"pgtrace: 127.0.0.1:{listen} -> 127.0.0.1:{server}", file=sys.stderr, flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
