#!/usr/bin/env python3
"""A loopback SMTP relay with a fixed mind per recipient, used once by make-fixture.sh to
have an earlier utskick write a journal of every kind of outcome.

    python3 tests/journal/relay.py PORT REFUSE_FILE

- asa.oberg@example.se: RCPT 550 5.1.1 (failed-permanent)
- marta.sjostrom@example.org: RCPT 451 4.3.0 every time (failed-transient)
- jons.akesson@example.se: the connection closes after the message, before the reply
  (unknown), every time
- anna-lena.ek@example.com: likewise, the first time only (unknown, then sent by retry)
- liselott.frojd@example.org: the first RCPT gets 421 4.7.0 and the connection closes
  (the relay's own trouble: deferred, then sent)
- everyone else: 250;
- while REFUSE_FILE exists, MAIL FROM gets 554 5.7.1 (the sender refused: the run stops,
  its attempts journaled ahead withdrawn).
Stops on SIGTERM.
"""

import asyncio
import os
import sys

seen = {}


async def session(reader, writer):
    def reply(text):
        writer.write(text.encode() + b"\r\n")

    reply("220 fixture-relay ESMTP")
    rcpts = []
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            verb = cmd[:4].upper()
            if verb in ("EHLO", "HELO"):
                reply("250-fixture-relay\r\n250-8BITMIME\r\n250 SMTPUTF8")
            elif verb == "MAIL" and os.path.exists(sys.argv[2]):
                reply("554 5.7.1 <dataskydd@example.se>: Sender address rejected: Access denied")
            elif verb == "MAIL":
                rcpts = []
                reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = cmd[cmd.index("<") + 1 : cmd.rindex(">")].lower()
                n = seen.get(addr, 0) + 1
                seen[addr] = n
                if addr == "asa.oberg@example.se":
                    reply("550 5.1.1 <asa.oberg@example.se>: Recipient address rejected: User unknown")
                elif addr == "marta.sjostrom@example.org":
                    reply("451 4.3.0 Temporary lookup failure")
                elif addr == "liselott.frojd@example.org" and n == 1:
                    reply("421 4.7.0 fixture-relay Service not available, closing transmission channel")
                    await writer.drain()
                    writer.close()
                    return
                else:
                    rcpts.append((addr, n))
                    reply("250 2.1.5 Ok")
            elif verb == "DATA":
                reply("354 End data with <CR><LF>.<CR><LF>")
                await writer.drain()
                while True:
                    data = await reader.readline()
                    if not data or data == b".\r\n":
                        break
                drop = any(
                    a == "jons.akesson@example.se" or (a == "anna-lena.ek@example.com" and n == 1)
                    for a, n in rcpts
                )
                if drop:
                    writer.close()
                    return
                reply("250 2.0.0 Ok: queued as FIX%d" % sum(seen.values()))
            elif verb == "RSET":
                rcpts = []
                reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                reply("221 2.0.0 Bye")
                await writer.drain()
                writer.close()
                return
            else:
                reply("502 5.5.2 Error: command not recognized")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return


async def main():
    server = await asyncio.start_server(session, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
