#!/usr/bin/env python3
"""A tiny asyncio SMTP sink for the rate benchmark: accepts everything, keeps nothing but
the arrival time of each MAIL FROM (and of each end of DATA).

    python3 bench/smtp_sink.py PORT LOG [--max-messages N] [--max-seconds S]
                               [--fail-451-every A] [--fail-550-every B]

Listens on 127.0.0.1:PORT. Writes LOG when it stops, one line per transaction:
`MAIL_FROM_ARRIVAL DATA_END_ARRIVAL CONNECTION` (Unix time in seconds, so that it can be
set against the journal's timestamps; the second is empty when the transaction did not
finish). It stops by itself one second
after the N-th message, after S seconds in all (default 600), or on SIGTERM/SIGINT.

Faults for bench/pushback.sh, by the number in a recipient's address (gen_csv.py writes
`name.NNNNNN@...`): with --fail-451-every A, every recipient whose number is 7 modulo A
gets `451 4.3.0 <addr>: Temporary failure, try again later` at RCPT, every time (a
persistent temporary failure, as Postfix writes it); with --fail-550-every B, every one
whose number is 3 modulo B gets Postfix's `550 5.1.1 ... User unknown`.
"""

import asyncio
import signal
import sys
import time

records = []  # [mail_from_time, data_end_time or None, connection number]
done = 0
connections = 0


FAIL_451 = 0
FAIL_550 = 0


def rcpt_reply(line):
    """The reply to one RCPT line, faults included."""
    addr = line.decode("utf-8", "replace").split(":", 1)[-1].strip().strip("<>")
    digits = "".join(c for c in addr.split("@")[0] if c.isdigit())
    n = int(digits) if digits else -1
    if FAIL_451 and n >= 0 and n % FAIL_451 == 7:
        return f"451 4.3.0 <{addr}>: Temporary failure, try again later"
    if FAIL_550 and n >= 0 and n % FAIL_550 == 3:
        return f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table"
    return "250 2.1.5 Ok"


async def session(reader, writer, stop, max_messages):
    global done, connections
    connections += 1
    conn = connections
    rec = None

    def reply(text):
        writer.write(text.encode() + b"\r\n")

    reply("220 bench-sink ESMTP")
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-bench-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                             b"250-ENHANCEDSTATUSCODES\r\n250 SIZE 104857600\r\n")
            elif verb == b"HELO":
                reply("250 bench-sink")
            elif verb == b"MAIL":
                rec = [time.time(), None, conn]
                records.append(rec)
                reply("250 2.1.0 Ok")
            elif verb == b"RCPT":
                reply(rcpt_reply(line))
            elif verb == b"DATA":
                reply("354 End data with <CR><LF>.<CR><LF>")
                await writer.drain()
                while True:
                    data = await reader.readline()
                    if not data:
                        return
                    if data == b".\r\n":
                        break
                if rec is not None:
                    rec[1] = time.time()
                done += 1
                reply(f"250 2.0.0 Ok: queued as B{done:06d}")
                if max_messages and done >= max_messages:
                    asyncio.get_running_loop().call_later(1.0, stop.set)
            elif verb in (b"RSET", b"NOOP"):
                reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                reply("221 2.0.0 Bye")
                await writer.drain()
                break
            else:
                reply("502 5.5.2 Error: command not recognized")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main():
    global FAIL_451, FAIL_550
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    port, log = int(args[0]), args[1]
    max_messages = 0
    max_seconds = 600.0
    rest = args[2:]
    while rest:
        flag, value = rest[0], rest[1]
        rest = rest[2:]
        if flag == "--max-messages":
            max_messages = int(value)
        elif flag == "--max-seconds":
            max_seconds = float(value)
        elif flag == "--fail-451-every":
            FAIL_451 = int(value)
        elif flag == "--fail-550-every":
            FAIL_550 = int(value)
        else:
            sys.exit(f"unknown option {flag}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(
        lambda r, w: session(r, w, stop, max_messages), "127.0.0.1", port, limit=1 << 20)
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    with open(log, "w") as f:
        for mail, end, conn in records:
            f.write(f"{mail:.6f} {'' if end is None else f'{end:.6f}'} {conn}\n")
    print(f"sink: {done} messages, {connections} connections (one is the readiness probe)")


if __name__ == "__main__":
    asyncio.run(main())
