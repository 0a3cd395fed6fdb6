"""RPC benchmark: meshkit against gRPC and a raw asyncio + msgpack baseline.

Run it with ``python bench/rpc.py`` or ``python -m meshkit.benchmark`` (see :func:`harness.main`
for the flags). The gRPC system needs the ``bench`` extra: ``pip install 'meshkit[bench]'``.
"""

from meshkit.benchmark.harness import main

__all__ = ["main"]
