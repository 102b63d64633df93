"""asyncio clients behind ``sockhub connect``, ``ping`` and ``bench``."""
