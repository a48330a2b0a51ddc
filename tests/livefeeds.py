"""The loopback RSS server and webhook receiver the live-feed tests use (kept in bench/, which the benchmark shares)."""

from bench.loopback import BILLION_LAUGHS, FeedServer, rss  # noqa: F401
