"""Seed: "Database Query Caching" — query results keyed by table and a hash of the query.

The database is a real in-memory SQLite; queries run in a thread. The key
template on AgentUp's page hashes only the query, so queries with different
``params`` must differ in text, or hash the params too (as done here).
"""

import asyncio
import sqlite3

from agentcache import cached, get_cache

DB = sqlite3.connect(":memory:", check_same_thread=False)
DB.executescript("""
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL);
    INSERT INTO orders (customer, total) VALUES ('alice', 12.5), ('bob', 99.0), ('alice', 7.25);
""")
QUERIES = []


async def execute(query: str, params: list) -> list:
    QUERIES.append(query)
    return await asyncio.to_thread(lambda: [list(row) for row in DB.execute(query, params).fetchall()])


@cached(ttl=600, key_template="db_query:{table}:{query_hash}:{params_hash}")
async def cached_database_query(table: str, query: str, params: list):
    """Cache database query results."""
    return await execute(query, params)


async def main() -> None:
    cache = get_cache()
    await cache.delete_pattern("db_query:*")
    query = "SELECT id, total FROM orders WHERE customer = ? ORDER BY id"
    alice = await cached_database_query("orders", query, ["alice"])
    again = await cached_database_query("orders", query, ["alice"])
    bob = await cached_database_query("orders", query, ["bob"])
    assert alice == again == [[1, 12.5], [3, 7.25]] and bob == [[2, 99.0]]
    assert len(QUERIES) == 2, QUERIES
    print(f"alice's orders: {alice}; 3 calls ran {len(QUERIES)} queries")
    await cache.close()


if __name__ == "__main__":
    asyncio.run(main())
