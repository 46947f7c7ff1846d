"""The embedder toolkit (item texts, cached item matrix, ranking, InfoNCE) and emb0/emb_cl, on a tiny
sentence-transformers model built here (no download)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recbench.examples import Histories
from recbench.llm.backend import ModelError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789().,:", "film", "genres", "comedy", "drama"]


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A 1-layer, 16-d BERT with a character vocabulary, saved as a sentence-transformers folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-st")
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(WORDS))
    BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    BertModel(config).save_pretrained(bert)
    SentenceTransformer(modules=[models.Transformer(str(bert), max_seq_length=64), models.Pooling(16)]).save(str(root / "st"))
    return str(root / "st")


def test_item_texts_compose_fields_and_count_title_only_items():
    from recbench.llm.embed import item_texts

    items = pd.DataFrame({"title": ["Heat (1995)", "Alien", "Blank"], "year": [1995, 1979, None],
                          "genres": ["Action|Crime", "", ""], "text": ["", "In space.", ""]})
    texts, counts = item_texts(items)
    assert texts == ["Heat (1995). Genres: Action, Crime.", "Alien (1979). In space.", "Blank"]
    assert counts == {"items": 3, "items_title_only": 1, "items_without_text": 2}


def test_a_folder_that_is_not_a_sentence_transformers_model_is_refused(tmp_path):
    from recbench.llm.embed import resolve_embedder

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="not a sentence-transformers model"):
        resolve_embedder(str(tmp_path))
    with pytest.raises(ModelError, match="does not exist"):
        resolve_embedder(str(tmp_path / "missing"))


def test_item_matrix_is_cached_per_embedder_state_and_ranking_is_one_product(tiny_st):
    from recbench.llm.embed import Embedder, ndcg_of_target, rank, train_infonce

    emb = Embedder(tiny_st, max_seq_length=32)
    texts = ["film a", "comedy b", "drama c", "film d (1990)"]
    first = emb.item_matrix(texts)
    assert emb.item_matrix(texts) is first and emb.item_matrix_builds == 1
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    queries = emb.encode(["comedy b", "film a"])
    hist = Histories.from_lists([[1], [0, 3]])
    scores = rank(queries, first, exclude=hist)
    expected = queries @ first.T
    assert np.isneginf(scores[0, 1]) and np.isneginf(scores[1, [0, 3]]).all()
    np.testing.assert_allclose(scores[1, [1, 2]], expected[1, [1, 2]], rtol=1e-6)
    # NDCG of one target: rank 1 -> 1, rank 3 -> 1/log2(4) = 0.5
    toy = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5]])
    np.testing.assert_allclose(ndcg_of_target(toy, np.array([0, 0])), [1.0, 0.5])
    assert ndcg_of_target(toy, np.array([0, 0]), k=2).tolist() == [1.0, 0.0]
    before = emb.state_digest()
    train_infonce(emb, ["film a", "comedy b"], ["drama c", "film d"], steps=1, batch_size=2, lr=1e-2)
    assert emb.state_digest() != before
    second = emb.item_matrix(texts)
    assert emb.item_matrix_builds == 2 and not np.allclose(second, first)


def test_infonce_loss_matches_a_hand_computed_value(tiny_st):
    import torch
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from recbench.llm.embed import Embedder

    emb = Embedder(tiny_st, max_seq_length=32)
    queries, positives = ["film a", "comedy b", "drama"], ["film d", "comedy", "drama 1"]
    q, d = emb.encode(queries), emb.encode(positives)
    logits = 20.0 * q @ d.T
    expected = np.mean(np.log(np.exp(logits).sum(axis=1)) - np.diag(logits))
    model = emb.model.eval()
    features = [model.tokenize(t) for t in (queries, positives)]
    with torch.no_grad():
        got = float(MultipleNegativesRankingLoss(model, scale=20.0)(features, None))
    assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("name", ["emb0", "emb_cl"])
def test_emb_methods_answer_the_session_task(tiny_st, name):
    from recbench.manager import load_registry
    from recbench.testing import run_method, tiny_task

    method = load_registry().methods.get(name)
    task, data = tiny_task("session")
    config = method.Config(embedder=tiny_st, steps=2, batch_size=8, train_sessions=40, max_seq_length=64)
    out = run_method(method, config, 0, task, data, batch_size=64)
    assert out.items.shape == (len(data.test_inputs), 20)
