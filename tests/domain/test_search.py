"""Patient search (SPEC §2): name-token prefixes in any order ignoring case and accents, date of birth in two
spellings, account number exact or prefix; at most 50 results; one practice only; index-backed on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from django.db import connection

from core.models import Patient
from core.search import search_patients
from tests.conftest import make_patient

pytestmark = pytest.mark.django_db
ON_POSTGRES = (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))


def found(world, query: str, limit: int = 20) -> list[str]:
    return [p.full_name for p in search_patients(world.practice.pk, query, limit)]


@pytest.mark.parametrize("query", ["garc mar", "mar garc", "María García", "MARIA", "garcía", "  Gar   MA  ", "m g"])
def test_name_tokens_match_by_prefix_in_any_order_ignoring_case_and_accents(world, query):
    assert found(world, query) == ["María García"]


@pytest.mark.parametrize("query", ["arcia", "aria", "garcias", "maria smith", "garc x"])
def test_name_tokens_only_match_the_start_of_a_name(world, query):
    assert found(world, query) == []


def test_a_token_matches_the_start_of_any_word_of_a_compound_name(world):
    make_patient(world.practice, "A-2001", "Ana Sofía", "de la Cruz")

    assert found(world, "sofia cruz") == ["Ana Sofía de la Cruz"]


@pytest.mark.parametrize("query", ["1980-04-02", "04/02/1980", "4/2/1980"])
def test_date_of_birth_in_iso_or_us_spelling(world, query):
    make_patient(world.practice, "A-2001", "Born", "Otherday", dt.date(1980, 2, 4))

    assert found(world, query) == ["María García"]


def test_an_impossible_date_finds_nothing(world):
    assert found(world, "1980-02-31") == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("A-1001", ["María García"]),
        ("a-1001", ["María García"]),
        ("A-100", ["María García", "John Smith"]),
        ("a-10", ["María García", "John Smith"]),
        ("-1001", []),
        ("1001", []),
    ],
)
def test_account_number_exact_or_prefix_ignoring_case(world, query, expected):
    assert sorted(found(world, query)) == sorted(expected)


def test_results_carry_what_the_picker_shows(world):
    (patient,) = search_patients(world.practice.pk, "garcia")

    assert (patient.full_name, patient.preferred_pronoun, patient.date_of_birth, patient.account_number) == (
        "María García",
        "she/her",
        dt.date(1980, 4, 2),
        "A-1001",
    )


def test_at_most_50_results_whatever_is_asked(world):
    Patient.objects.bulk_create(
        [
            Patient(
                practice=world.practice,
                account_number=f"B-{n:04d}",
                first_name="Many",
                last_name=f"Namesake{n}",
                date_of_birth=dt.date(1990, 1, 1),
                search_name=f"many namesake{n}",
                search_account=f"b-{n:04d}",
            )
            for n in range(60)
        ]
    )

    assert len(found(world, "many", limit=100)) == 50
    assert len(found(world, "many", limit=5)) == 5


def test_search_is_scoped_to_one_practice(world):
    assert found(world, "zoe") == []
    assert [p.full_name for p in search_patients(world.other_practice.pk, "zoe")] == ["Zoë Outside"]
    assert [p.pk for p in search_patients(world.other_practice.pk, "A-1001")] == [world.outside_patient.pk]


@pytest.mark.parametrize("query", ["", "   ", "%", "_", "\\"])
def test_empty_or_wildcard_only_queries_find_nothing(world, query):
    assert found(world, query) == []


# ---- PostgreSQL: index use ------------------------------------------------------------------------


# fmt: off
SYLLABLES = [
    "ka", "lo", "mi", "ne", "su", "ta", "re", "vi", "do", "an", "el", "or", "is", "um", "ba",
    "ch", "fe", "gu", "ho", "ji", "ku", "la", "mo", "nu", "pe", "qu", "ri", "so", "tu", "we",
]
# fmt: on


def synthetic_name(n: int, parts: int) -> str:
    """Pronounceable, varied names without digits, like a real directory (20k patients, 900 first names)."""
    syllables = [SYLLABLES[(n // len(SYLLABLES) ** i) % len(SYLLABLES)] for i in range(parts)]
    return "".join(syllables).capitalize()


@pytest.fixture
def many_patients(world) -> None:
    patients = []
    for n in range(20_000):
        patient = Patient(
            practice=world.practice,
            account_number=f"Z-{n:06d}",
            first_name=synthetic_name(n * 7, 2),
            last_name=synthetic_name(n * 13 + 5, 3),
            date_of_birth=dt.date(1950, 1, 1) + dt.timedelta(days=n),
        )
        patient.refresh_search_columns()
        patients.append(patient)
    Patient.objects.bulk_create(patients, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE core_patient")


def explain(practice_id: int, query: str) -> str:
    results = search_patients(practice_id, query)
    if hasattr(results, "explain"):  # a date of birth: an ORM queryset
        return results.explain()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + results.raw_query, results.params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
@pytest.mark.parametrize("query", ["garc mar", "garcia", "kalo", "ka lo", "k", "z-00012", "Z-000123", "1950-02-03"])
def test_name_and_account_searches_use_an_index_on_postgres(world, many_patients, query):
    explained = explain(world.practice.pk, query)

    assert "Seq Scan" not in explained, (query, explained)
    assert "Index" in explained, (query, explained)


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
@pytest.mark.parametrize("query", ["garc mar", "ka lo", "lo ka su", "m g"])
def test_two_token_searches_seek_the_second_token_in_the_pair_index_on_postgres(world, many_patients, query):
    # Per word of the first token, the second token is a range of the pair index (an Index Cond), not a filter
    # on a walk past every patient sorted before the matches.
    lines = explain(world.practice.pk, query).splitlines()

    (seek,) = [
        i
        for i, line in enumerate(lines)
        if "Index Only Scan using patient_search_pair_order on" in line and " t " in line
    ]
    condition = next(line for line in lines[seek + 1 : seek + 3] if "Index Cond:" in line)
    assert "other >=" in condition, "\n".join(lines)
    assert "Seq Scan" not in "\n".join(lines)


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
@pytest.mark.parametrize("query", ["garc", "k", "kalo"])
def test_name_searches_read_each_word_in_result_order_on_postgres(world, many_patients, query):
    # The token index lists each word's patients already sorted: no sort of every patient a prefix matches,
    # only of the few pages the matching words contribute.
    lines = explain(world.practice.pk, query).splitlines()

    (walk,) = [
        i
        for i, line in enumerate(lines)
        if "Index Only Scan using patient_search_token_order on" in line and " t " in line
    ]
    assert "Limit" in lines[walk - 1], "\n".join(lines)  # stopped after a page, not sorted first


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
def test_the_first_page_of_a_common_prefix_matches_the_plain_query(world, many_patients):
    # The token search returns exactly what the LIKE filter would, in the same order.
    from core.search import _name_token_filter

    for query in ("ka", "ka lo", "lo ka", "mi", "kalo ne", "su ta re", "k l", "ka kalo lo", "mo mo"):
        expected = Patient.objects.filter(practice=world.practice)
        for token in query.split():
            expected = expected.filter(_name_token_filter(token))
        expected = list(expected.order_by("last_name", "first_name", "pk")[:20])

        assert list(search_patients(world.practice.pk, query)) == expected, query


def token_rows(practice_id: int) -> set[tuple]:
    """What the token table holds for a practice, or, on SQLite (no table), what it should hold."""
    if not ON_POSTGRES:
        return expected_token_rows(practice_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT patient_id, token, last_name, first_name FROM core_patient_search_token WHERE practice_id = %s",
            [practice_id],
        )
        return set(cursor.fetchall())


def expected_token_rows(practice_id: int) -> set[tuple]:
    patients = Patient.objects.filter(practice_id=practice_id)
    return {(p.pk, w, p.last_name, p.first_name) for p in patients for w in set(p.search_name.split())}


def pair_rows(practice_id: int) -> set[tuple]:
    """What the pair table holds for a practice, or, on SQLite (no table), what it should hold."""
    if not ON_POSTGRES:
        return expected_pair_rows(practice_id)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT patient_id, word, other, last_name, first_name FROM core_patient_search_pair "
            "WHERE practice_id = %s",
            [practice_id],
        )
        return set(cursor.fetchall())


def expected_pair_rows(practice_id: int) -> set[tuple]:
    rows = set()
    for p in Patient.objects.filter(practice_id=practice_id):
        words = set(p.search_name.split())
        rows |= {(p.pk, a, b, p.last_name, p.first_name) for a in words for b in words if a != b}
    return rows


def search_tables_follow(practice_id: int) -> bool:
    return token_rows(practice_id) == expected_token_rows(practice_id) and pair_rows(practice_id) == expected_pair_rows(
        practice_id
    )


def test_search_tokens_follow_every_kind_of_patient_write(world):
    # given patients created one by one and in bulk
    one = make_patient(world.practice, "T-1", "Renée", "Dubois")
    bulk = Patient(
        practice=world.practice,
        account_number="T-2",
        first_name="Ana Ana",
        last_name="Ruiz",
        date_of_birth=dt.date(1970, 1, 1),
    )
    bulk.refresh_search_columns()
    (bulk,) = Patient.objects.bulk_create([bulk])
    assert search_tables_follow(world.practice.pk)
    # when one is renamed by save(), another by bulk_update, a third has only its pronoun changed
    one.last_name = "Lefèvre"
    one.save()
    bulk.first_name = "Zoé"
    bulk.refresh_search_columns()
    Patient.objects.bulk_update([bulk], ["first_name", "search_name"])
    Patient.objects.filter(pk=world.patient.pk).update(preferred_pronoun="they/them")
    # then the search follows the new names only
    assert search_tables_follow(world.practice.pk)
    assert found(world, "dubois") == []
    assert found(world, "lef ren") == ["Renée Lefèvre"]
    assert found(world, "ana ruiz") == []
    assert found(world, "zoe ruiz") == ["Zoé Ruiz"]
    # and a deleted patient leaves nothing behind
    one.delete()
    assert search_tables_follow(world.practice.pk)
    assert found(world, "lef") == []


def test_punctuation_in_names_is_searchable_both_ways(db):
    # given patients with an apostrophe and a hyphen in their names
    from tests.conftest import make_patient, make_practice

    practice = make_practice("punct", "Punctuation Clinic")
    obrien = make_patient(practice, "P-1", "Seán", "O'Brien")
    garcia = make_patient(practice, "P-2", "Ana", "García-López")
    # when searching without the punctuation, or by the second half of a hyphenated name
    # then both are found
    assert list(search_patients(practice.pk, "obrien")) == [obrien]
    assert list(search_patients(practice.pk, "o'brien sean")) == [obrien]
    assert list(search_patients(practice.pk, "lopez")) == [garcia]
    assert list(search_patients(practice.pk, "garcia-lopez")) == [garcia]


# ---- letters NFKD keeps whole, the API's bounds and the workbench switch ---------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "query"),
    [
        ("Łukasz", "Nowak", "luk"),
        ("Łukasz", "Nowak", "łuk now"),
        ("Søren", "Kierkegaard", "soren kier"),
        ("Ole", "Østergaard", "oster"),
        ("Đorđe", "Balašević", "dorde bal"),
        ("Anna", "Straße", "strasse"),
        ("Freyja", "Æbeltoft", "aeb"),
        ("Œdipe", "Roi", "oed"),
        ("Þóra", "Björk", "thora"),
        ("Ayşe", "Kırık", "kirik ayse"),
    ],
)
def test_letters_with_strokes_and_ligatures_fold_like_accents(world, first, last, query):
    make_patient(world.practice, "L-1", first, last)

    assert found(world, query) == [f"{first} {last}"]
    assert search_tables_follow(world.practice.pk)


def test_the_fold_migration_refolds_names_stored_before_it(world):
    # given a patient stored when "ł" was kept whole (the search tables follow the old name on PostgreSQL)
    import importlib

    from django.apps import apps

    lukasz = make_patient(world.practice, "L-1", "Łukasz", "Øster")
    Patient.objects.filter(pk=lukasz.pk).update(search_name="łukasz øster")
    assert found(world, "luk") == []
    # when the migration runs
    importlib.import_module("core.migrations.0012_fold_latin_letters_in_search_names").recompute(apps, None)
    # then the name is found by its folded letters, and the token and pair tables were rewritten with it
    assert Patient.objects.get(pk=lukasz.pk).search_name == "lukasz oster"
    assert found(world, "luk ost") == ["Łukasz Øster"]
    assert search_tables_follow(world.practice.pk)


def test_a_name_that_folds_longer_than_its_column_is_cut_not_refused(world):
    patient = make_patient(world.practice, "L-1", "ß" * 100, "Æ" * 100)

    assert len(Patient.objects.get(pk=patient.pk).search_name) == 201
    assert found(world, "ssss") == [patient.full_name]
