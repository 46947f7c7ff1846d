"""Embedding retrieval speed on the session task: item embedding time per 1,000 items, and users per
second of evaluation (history texts encoded, then one matrix product against the cached item matrix
and top-k), for the embedded all-MiniLM-L6-v2 on ML-100K (or any dataset and embedder)::

    .venv/bin/python benches/session_embed.py [--dataset ml-100k] [--embedder all-minilm-l6-v2] [--users 512] [--threads 1]

Prints one JSON object: items, item seconds and seconds per 1,000 items (first build, then the
cached second call), users evaluated and users per second split into encoding and ranking.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--embedder", default="all-minilm-l6-v2")
    parser.add_argument("--users", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from recbench.data.store import get_catalog
    from recbench.llm.embed import Embedder, history_text, item_texts, rank
    from recbench.manager import load_registry
    from recbench.method import top_k
    from recbench.tasks.session import SessionTask

    registry = load_registry()
    catalog = get_catalog(registry.datasets.get(args.dataset))
    task = SessionTask(registry.tasks.get("session"))
    data = task.build(catalog)
    test = data.test_inputs.take(slice(0, args.users))
    texts, counts = item_texts(catalog.items)
    emb = Embedder(args.embedder)
    start = time.perf_counter()
    items = emb.item_matrix(texts)
    item_s = time.perf_counter() - start
    start = time.perf_counter()
    emb.item_matrix(texts)
    cached_s = time.perf_counter() - start
    encode_s = rank_s = 0.0
    for begin in range(0, len(test), args.batch):
        batch = test.take(slice(begin, begin + args.batch))
        t0 = time.perf_counter()
        queries = emb.encode([history_text(texts, batch.histories.items_of(i)) for i in range(len(batch))])
        t1 = time.perf_counter()
        top_k(rank(queries, items, exclude=batch.histories).astype("float64"), 20)
        rank_s += time.perf_counter() - t1
        encode_s += t1 - t0
    print(json.dumps({
        "dataset": args.dataset, "embedder": args.embedder, "threads": args.threads, "load": os.getloadavg(),
        "items": len(texts), "item_text": counts, "item_matrix_s": round(item_s, 2),
        "s_per_1000_items": round(1000 * item_s / len(texts), 2), "cached_item_matrix_s": round(cached_s, 3),
        "users": len(test), "users_per_s": round(len(test) / (encode_s + rank_s), 1),
        "encode_s": round(encode_s, 2), "rank_s": round(rank_s, 3), "rank_users_per_s": round(len(test) / max(rank_s, 1e-9), 1),
    }, indent=1))


if __name__ == "__main__":
    main()
