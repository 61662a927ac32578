"""Builds a benchmark database of a given size that looks like an application's data.

pgbench tables compress 56:1 and flatter every backup number, so this generator writes what real databases
hold: prose of varying length drawn from a skewed vocabulary, jsonb documents with numbers and nested
objects, numerics, timestamps, random (incompressible) bytea, and b-tree indexes. Its dump compresses about
3:1; the script measures and prints the ratio.

    .venv/bin/python -m bench.generate_data --size 1GB --dbname bench_1g

The size is the database's size on disk (pg_database_size) including indexes, to within a few percent.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import time
from itertools import accumulate

import psycopg
from psycopg import sql

ADMIN_URL_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEMA = """
CREATE SCHEMA shop;
CREATE SCHEMA content;
CREATE TABLE shop.customers (
    id bigint PRIMARY KEY, email text NOT NULL, full_name text NOT NULL, country char(2) NOT NULL,
    balance numeric(12, 2) NOT NULL, created_at timestamptz NOT NULL, profile jsonb NOT NULL
);
CREATE TABLE shop.orders (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12, 2) NOT NULL,
    currency char(3) NOT NULL, created_at timestamptz NOT NULL, shipped_at timestamptz, lines jsonb NOT NULL
);
CREATE TABLE shop.events (
    id bigint PRIMARY KEY, occurred_at timestamptz NOT NULL, kind text NOT NULL, customer_id bigint,
    user_agent text, payload jsonb NOT NULL
);
CREATE TABLE content.documents (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL, title text NOT NULL, body text NOT NULL,
    tags text[] NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
);
CREATE TABLE content.attachments (
    id bigint PRIMARY KEY, document_id bigint NOT NULL, mime text NOT NULL, content bytea NOT NULL,
    checksum text NOT NULL
);
"""
INDEXES = """
CREATE UNIQUE INDEX customers_email ON shop.customers (email);
CREATE INDEX orders_customer ON shop.orders (customer_id);
CREATE INDEX orders_created ON shop.orders (created_at);
CREATE INDEX events_occurred ON shop.events (occurred_at);
CREATE INDEX events_kind_customer ON shop.events (kind, customer_id);
CREATE INDEX documents_customer ON content.documents (customer_id);
CREATE INDEX documents_title ON content.documents (title);
CREATE INDEX attachments_document ON content.attachments (document_id);
"""
# Share of the table data each table gets (by bytes written); indexes come on top.
SHARES = {"customers": 0.06, "orders": 0.22, "events": 0.24, "documents": 0.36, "attachments": 0.12}
INDEX_ALLOWANCE = 0.08  # indexes add about this fraction of the final size
ROUND_BYTES = 32 * 1024 * 1024

STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
EVENT_KINDS = ["page_view", "click", "search", "add_to_cart", "checkout", "login", "logout", "api_call"]
COUNTRIES = ["DE", "FR", "US", "GB", "NL", "SE", "PL", "ES", "IT", "JP", "BR", "IN", "CA", "AU"]
CURRENCIES = ["EUR", "USD", "GBP", "JPY", "SEK"]
MIMES = ["image/png", "image/jpeg", "application/pdf", "application/octet-stream"]
AGENTS = [
    f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.{b}.{p} Safari/537.36"
    for os_ in ("X11; Linux x86_64", "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 14_2")
    for v in (118, 119, 120, 121)
    for b in (5993, 6045, 6099)
    for p in (70, 88, 110)
]
EPOCH = 1_600_000_000


class Vocabulary:
    """Pseudo-words with a Zipf-like frequency, so prose compresses like prose (about 3:1 with gzip)."""

    def __init__(self, rng: random.Random, size: int = 12000):
        syllables = [a + b for a in "bcdfghjklmnprstvwz" for b in "aeiou"] + ["th", "st", "er", "an", "en", "qu"]
        words = set()
        while len(words) < size:
            words.add("".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
        self.words = sorted(words, key=lambda _: rng.random())
        self.cum_weights = list(accumulate(1 / (rank + 2.7) for rank in range(size)))
        self.rng = rng

    def text(self, words: int) -> str:
        chosen = self.rng.choices(self.words, cum_weights=self.cum_weights, k=words)
        out, sentence = [], 0
        for word in chosen:
            sentence += 1
            if sentence > 6 and self.rng.random() < 0.12:
                out.append(word + ".")
                sentence = 0
            else:
                out.append(word)
        return " ".join(out)


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.vocab = Vocabulary(self.rng)
        self.next_id = {name: 1 for name in SHARES}

    def _ids(self, table: str, count: int) -> range:
        start = self.next_id[table]
        self.next_id[table] = start + count
        return range(start, start + count)

    def _ts(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(EPOCH + self.rng.randrange(0, 120_000_000)))

    def _customer_id(self) -> int:
        return self.rng.randrange(1, max(2, self.next_id["customers"]))

    def customers(self, target: int) -> bytes:
        out, size = io.StringIO(), 0
        while size < target:
            for cid in self._ids("customers", 200):
                name = self.vocab.text(2).title()
                profile = json.dumps(
                    {
                        "plan": self.rng.choice(["free", "pro", "team", "enterprise"]),
                        "newsletter": self.rng.random() < 0.4,
                        "score": round(self.rng.random() * 100, 3),
                        "tags": self.vocab.text(self.rng.randint(0, 5)).split(),
                        "address": {
                            "street": self.vocab.text(2).title(),
                            "number": self.rng.randint(1, 400),
                            "zip": f"{self.rng.randint(1000, 99999)}",
                        },
                    }
                )
                line = (
                    f"{cid}\t{name.replace(' ', '.').lower()}{cid}@example.com\t{name}\t"
                    f"{self.rng.choice(COUNTRIES)}\t{self.rng.randint(-50000, 500000) / 100:.2f}\t{self._ts()}\t"
                    f"{profile}\n"
                )
                out.write(line)
                size += len(line)
        return out.getvalue().encode()

    def orders(self, target: int) -> bytes:
        out, size = io.StringIO(), 0
        while size < target:
            for oid in self._ids("orders", 200):
                lines = [
                    {
                        "sku": f"SKU-{self.rng.randint(1, 40000):06d}",
                        "qty": self.rng.randint(1, 9),
                        "price": round(self.rng.lognormvariate(3, 1), 2),
                        "name": self.vocab.text(self.rng.randint(1, 4)),
                    }
                    for _ in range(self.rng.randint(1, 8))
                ]
                total = sum(item["qty"] * item["price"] for item in lines)
                shipped = self._ts() if self.rng.random() < 0.7 else "\\N"
                line = (
                    f"{oid}\t{self._customer_id()}\t{self.rng.choice(STATUSES)}\t{total:.2f}\t"
                    f"{self.rng.choice(CURRENCIES)}\t{self._ts()}\t{shipped}\t{json.dumps(lines)}\n"
                )
                out.write(line)
                size += len(line)
        return out.getvalue().encode()

    def events(self, target: int) -> bytes:
        out, size = io.StringIO(), 0
        while size < target:
            for eid in self._ids("events", 500):
                payload = {
                    "path": "/" + "/".join(self.vocab.text(self.rng.randint(1, 3)).split()),
                    "ms": self.rng.randint(3, 4000),
                    "session": f"{self.rng.getrandbits(64):016x}",
                    "ip": f"10.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}",
                }
                if self.rng.random() < 0.3:
                    payload["query"] = self.vocab.text(self.rng.randint(1, 6))
                customer = self._customer_id() if self.rng.random() < 0.8 else "\\N"
                line = (
                    f"{eid}\t{self._ts()}\t{self.rng.choice(EVENT_KINDS)}\t{customer}\t"
                    f"{self.rng.choice(AGENTS)}\t{json.dumps(payload)}\n"
                )
                out.write(line)
                size += len(line)
        return out.getvalue().encode()

    def documents(self, target: int) -> bytes:
        out, size = io.StringIO(), 0
        while size < target:
            for did in self._ids("documents", 50):
                words = min(6000, max(5, int(self.rng.lognormvariate(5.0, 1.2))))
                tags = "{" + ",".join(self.vocab.text(self.rng.randint(0, 4)).split()) + "}"
                line = (
                    f"{did}\t{self._customer_id()}\t{self.vocab.text(self.rng.randint(3, 10))}\t"
                    f"{self.vocab.text(words)}\t{tags}\t{self._ts()}\t{self._ts()}\n"
                )
                out.write(line)
                size += len(line)
        return out.getvalue().encode()

    def attachments(self, target: int) -> bytes:
        out, size = io.BytesIO(), 0
        while size < target:
            for aid in self._ids("attachments", 20):
                content = self.rng.randbytes(int(min(200_000, self.rng.lognormvariate(9.0, 1.0))))
                line = (
                    f"{aid}\t{self.rng.randrange(1, max(2, self.next_id['documents']))}\t{self.rng.choice(MIMES)}\t"
                    f"\\\\x{content.hex()}\t{self.rng.getrandbits(128):032x}\n"
                ).encode()
                out.write(line)
                size += len(content)
        return out.getvalue()


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def database_url(admin_url: str, dbname: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + dbname


def build(admin_url: str, dbname: str, size: int, seed: int = 1, log=print) -> dict:
    started = time.monotonic()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    url = database_url(admin_url, dbname)
    gen = Generator(seed)
    data_target = size * (1 - INDEX_ALLOWANCE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        on_disk = 0
        while on_disk < data_target:
            # Raw COPY text takes about as much room on disk; the last round only fills what is left.
            round_bytes = max(1024 * 1024, min(ROUND_BYTES, int(data_target - on_disk)))
            for table, share in SHARES.items():
                schema = "content" if table in ("documents", "attachments") else "shop"
                block = getattr(gen, table)(int(round_bytes * share))
                with conn.cursor().copy(
                    sql.SQL("COPY {}.{} FROM STDIN").format(sql.Identifier(schema), sql.Identifier(table))
                ) as copy:
                    copy.write(block)
            on_disk = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
            log(f"  {on_disk / 1024**2:.0f} MB of {size / 1024**2:.0f} MB")
        log("  building indexes, then VACUUM (FREEZE, ANALYZE)")
        conn.execute(INDEXES)
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        final = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])
    return {"database": dbname, "url": url, "size_bytes": final, "build_s": round(time.monotonic() - started, 1)}


def compression_ratios(url: str) -> dict:
    """Sizes of the custom-format dump with pg_dump's default gzip and with no compression."""
    sizes = {}
    for label, extra in (("gzip_default", []), ("uncompressed", ["--compress=0"])):
        with subprocess.Popen(["pg_dump", "-Fc", *extra, f"--dbname={url}"], stdout=subprocess.PIPE) as proc:
            total = 0
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
        if proc.returncode:
            raise SystemExit(f"pg_dump failed with exit code {proc.returncode}")
        sizes[label] = total
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GB", help="database size on disk, e.g. 200MB, 1GB, 4GB")
    parser.add_argument("--dbname", default="bench_1g")
    parser.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", ADMIN_URL_DEFAULT))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-ratio", action="store_true", help="do not dump twice to measure compression")
    args = parser.parse_args(argv)
    size = parse_size(args.size)
    print(f"building {args.dbname}: {size / 1024**2:.0f} MB of realistic data")
    result = build(args.admin_url, args.dbname, size, args.seed)
    print(f"built {result['database']}: {result['size_bytes'] / 1024**2:.0f} MB on disk in {result['build_s']} s")
    if not args.skip_ratio:
        sizes = compression_ratios(result["url"])
        print(
            f"dump, uncompressed: {sizes['uncompressed'] / 1024**2:.0f} MB; with pg_dump's default gzip: "
            f"{sizes['gzip_default'] / 1024**2:.0f} MB"
        )
        print(
            f"compression ratio (uncompressed dump / gzip dump): {sizes['uncompressed'] / sizes['gzip_default']:.2f}:1"
        )
        print(f"database size on disk / gzip dump: {result['size_bytes'] / sizes['gzip_default']:.2f}:1")
    print(f"DATABASE_URL={result['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
