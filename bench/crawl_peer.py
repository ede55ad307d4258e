"""Peer for the crawl benchmark: an asyncio/aiohttp fetcher doing the same job as
`m6corpus crawl` on a seed list (robots.txt once per host, bounded concurrency,
bodies into zstd Parquet in batches), without the crawler's resume machinery.

Usage: crawl_peer.py SEEDS OUT.parquet CONCURRENCY [ZSTD_LEVEL]. The level defaults to
3, m6corpus's `[corpus] zstd_level`: pyarrow's own default (1) writes the handbook
pages 25% larger, for less CPU, which is not the same job."""
import asyncio, sys, time, urllib.robotparser
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq


async def main(seed_file, out_file, concurrency, level):
    urls = [l.strip() for l in open(seed_file) if l.strip()]
    sem = asyncio.Semaphore(concurrency)
    robots = {}
    schema = pa.schema([("url", pa.string()), ("status", pa.uint16()), ("content_type", pa.string()), ("body", pa.binary())])
    writer = pq.ParquetWriter(out_file, schema, compression="zstd", compression_level=level)
    buf = []
    total = 0

    def flush():
        nonlocal buf
        if buf:
            writer.write_table(pa.Table.from_pylist(buf, schema=schema))
            buf = []

    async with aiohttp.ClientSession(headers={"User-Agent": "m6corpus-bench-peer"}) as s:
        async def allowed(u):
            p = urlsplit(u)
            origin = f"{p.scheme}://{p.netloc}"
            if origin not in robots:
                rp = urllib.robotparser.RobotFileParser()
                async with s.get(origin + "/robots.txt") as r:
                    text = await r.text() if r.status < 400 else ""
                rp.parse(text.splitlines())
                robots[origin] = rp
            return robots[origin].can_fetch("m6corpus", u)

        async def one(u):
            nonlocal total
            async with sem:
                if not await allowed(u):
                    buf.append({"url": u, "status": None, "content_type": None, "body": None})
                    return
                async with s.get(u) as r:
                    body = await r.read()
                    total += len(body)
                    buf.append({"url": u, "status": r.status, "content_type": r.headers.get("content-type"), "body": body})
                    if len(buf) >= 256:
                        flush()

        await asyncio.gather(*(one(u) for u in urls))
    flush()
    writer.close()
    print(total)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 3))
