"""asyncio tasks marking spans with python/asyncshim.py (tests/test_spans.py).

Three tasks run concurrently on one event loop; each opens a request, a
span outer-N, awaits (the other tasks run), opens inner-N, awaits again
(task 1 then blocks the loop in time.sleep inside inner-1), and calls a
decorated coroutine `step`.  Every span must nest in its own task's spans.
A fourth task enters a span "holder" just before task 1 wakes up to block,
and stays suspended in it: the blocking call is still task 1's."""
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import asyncshim  # noqa: E402


@asyncshim.span("step")
async def step(n):
    await asyncio.sleep(0.001)
    return n


@asyncshim.span("sync-helper")
def helper(n):
    return n * 2


async def worker(n):
    with asyncshim.request("task-%d" % n):
        with asyncshim.span("outer-%d" % n) as s:
            s.set("n", n)
            s.set("kind", "worker")
            await asyncio.sleep(0.01 * (3 - n))
            with asyncshim.span("inner-%d" % n):
                await asyncio.sleep(0.005)
                if n == 1:
                    time.sleep(0.03)
            await asyncio.sleep(0.002)
        await step(n)
        helper(n)


async def holder():
    await asyncio.sleep(0.024)
    with asyncshim.span("holder"):
        await asyncio.sleep(0.1)


async def main():
    await asyncio.gather(holder(), *(worker(n) for n in range(3)))
    with asyncshim.span("after"):
        await asyncio.sleep(0.001)
    print("done")


asyncio.run(main())
