"""A TCP proxy to PostgreSQL for the rehearsal's fault scenario: while the file FAULT exists,
every answer from the database reaches the service DELAY_MS later (a slow disk, a saturated
database). Usage: slow_proxy.py LISTEN_PORT TARGET_PORT FAULT [DELAY_MS]. Stops after
STOP_AFTER seconds (default 3600)."""
import asyncio
import os
import sys

LISTEN, TARGET, FAULT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
DELAY = (int(sys.argv[4]) if len(sys.argv) > 4 else 150) / 1000


async def pipe(reader, writer, slow):
    try:
        while data := await reader.read(65536):
            if slow and os.path.exists(FAULT):
                await asyncio.sleep(DELAY)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", TARGET)
    await asyncio.gather(
        pipe(client_reader, server_writer, False), pipe(server_reader, client_writer, True)
    )


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with server:
        await asyncio.wait_for(server.serve_forever(), float(os.environ.get("STOP_AFTER", "3600")))


try:
    asyncio.run(main())
except asyncio.TimeoutError:
    pass
