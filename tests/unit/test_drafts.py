"""The draft parser turns a pasted edition into the edition JSON and shows what it left out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.editions.drafts import DraftProblem, ParsedDraft, parse_draft

FIXTURE = Path(__file__).parents[1] / "fixtures" / "draft_fr.txt"
# The real edition our users publish lives outside the repository (shared/seeds/);
# CI points at it, a fresh clone alone skips this one check and says why.
SEED_ENV = "HEBDO_SEED_EDITION"

HEADER = """Illustration par DALL \u2022 E

Intelligence & Société

{week}

Paul Jorion & [Jueun Ahn](#)

SYNTHÈSE

Un titre de synthèse

Un paragraphe qui se termine bien.

NOUVELLES

"""


def _draft(news: str, week: str = "Semaine du 18 au 25 janvier 2025") -> str:
    return HEADER.format(week=week) + news


def _line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` that starts with `needle`."""
    return next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith(needle))


@pytest.fixture(scope="module")
def fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parsed(fixture_text: str) -> ParsedDraft:
    return parse_draft(fixture_text)


def test_header_gives_title_week_authors_and_credit(parsed: ParsedDraft) -> None:
    edition = parsed.edition
    assert edition["title"] == "Intelligence & Société"
    assert (edition["week_start"], edition["week_end"]) == ("2024-12-28", "2025-01-04")
    assert edition["authors"] == ["Paul Jorion", "Jueun Ahn"]
    assert edition["image"] == {"url": None, "alt": "", "credit": "Illustration par Midjourney"}
    assert edition["subject"] == (
        "Intelligence & Société \u2014 Semaine du 28 décembre 2024 au 4 janvier 2025"
    )
    assert edition["preheader"] == (
        "Pendant que la plupart des rédactions tournaient au ralenti, "
        "l'intelligence artificielle, elle, n'a pas pris de vacances."
    )


def test_every_news_item_has_its_date_title_and_source(parsed: ParsedDraft) -> None:
    got = [
        (item["date"], item["title"], item["source_name"], item["source_url"])
        for item in parsed.edition["items"]
    ]
    assert got == [
        (
            "2024-12-26",
            "DeepSeek-V3 : un modèle ouvert qui bouscule l'économie de l'IA",
            "ChinaTalk",
            None,
        ),
        (
            "2024-12-27",
            "OpenAI dévoile son plan pour devenir une société à but lucratif",
            "Financial Times",
            "https://www.ft.com/content/openai-public-benefit-corporation",
        ),
        (
            "2024-12-20",
            "L'Italie inflige 15 millions d'euros d'amende à OpenAI",
            "Le Monde",
            "https://www.lemonde.fr/pixels/article/2024/12/20/openai-amende-italie.html",
        ),
        ("2024-12-20", "o3 : OpenAI revendique un bond sur le test ARC-AGI", None, None),
        (
            "2025-01-03",
            "Microsoft prévoit 80 milliards de dollars pour ses centres de données",
            "Le Devoir",
            "https://www.ledevoir.com/economie/microsoft-centres-de-donnees",
        ),
        (
            "2025-01-02",
            "Meta veut peupler ses réseaux de personnages générés par IA",
            "France Info",
            None,
        ),
    ]
    assert all(item["image"] is None for item in parsed.edition["items"])


def test_date_without_year_takes_the_year_of_the_week(parsed: ParsedDraft) -> None:
    items = parsed.edition["items"]
    # "Le 27 décembre" in a week ending in January falls in the week's first year.
    assert items[1]["date"] == "2024-12-27"
    assert items[4]["date"] == "2025-01-03"


def test_synthesis_keeps_title_and_sub_headings(parsed: ParsedDraft) -> None:
    synthesis = parsed.edition["synthesis"]
    assert synthesis.startswith(
        "# Fin d'année : l'IA entre promesses ouvertes et comptes à rendre\n\nPendant que"
    )
    headings = [line for line in synthesis.split("\n") if line.startswith("#")]
    assert headings == [
        "# Fin d'année : l'IA entre promesses ouvertes et comptes à rendre",
        "## Le prix de l'intelligence baisse",
        "## Des régulateurs moins patients",
        "## Ce qu'il faut surveiller en janvier",
    ]
    assert "**DeepSeek-V3**" in synthesis


def test_paragraphs_broken_by_the_paste_are_joined(parsed: ParsedDraft) -> None:
    paragraphs = parsed.edition["synthesis"].split("\n\n")
    assert any("les géants de la high-tech ont confirmé des budgets" in p for p in paragraphs)
    assert any(p.endswith("le signal est net en cette fin d'année.") for p in paragraphs)
    assert not any(p.startswith(("tech ", "d'année")) for p in paragraphs)


def test_item_body_keeps_sub_headings_lists_and_emphasis(parsed: ParsedDraft) -> None:
    first, second = parsed.edition["items"][:2]
    assert first["body"] == (
        "Le laboratoire chinois DeepSeek a mis en ligne les poids de son modèle "
        "**DeepSeek-V3**, accompagnés d'un rapport technique détaillé.\n\n"
        "### Une architecture économe\n\n"
        "Le modèle repose sur un *mélange d'experts* : seule une petite partie des "
        "paramètres travaille pour chaque mot produit. Selon ses auteurs :\n\n"
        "- l'entraînement a mobilisé environ 2,8 millions d'heures de GPU H800 ;\n"
        "- le coût affiché reste inférieur à six millions de dollars ;\n"
        "- les poids sont téléchargeables sous une licence permissive.\n\n"
        "### Des chiffres à vérifier\n\n"
        "Plusieurs chercheurs rappellent que ce montant n'inclut ni les expériences "
        "préalables ni les salaires de l'équipe."
    )
    assert (
        "\n\n- La fondation à but non lucratif garderait une participation importante.\n"
        "- Les investisseurs recevraient des actions ordinaires.\n\n"
    ) in second["body"]


def test_lines_it_cannot_place_are_problems_with_their_line_numbers(
    parsed: ParsedDraft, fixture_text: str
) -> None:
    assert parsed.problems == [
        DraftProblem(
            3,
            "BROUILLON v2 \u2014 à relire avant envoi",
            "text before the title that is not an illustration credit",
        ),
        DraftProblem(57, "Partager cet article sur LinkedIn", "text outside any news item"),
    ]
    assert _line_of(fixture_text, "Partager") == 57


def test_related_reads_are_read_leniently(parsed: ParsedDraft) -> None:
    assert parsed.edition["related"] == [
        {
            "title": "Pourquoi les modèles ouverts inquiètent Washington",
            "date": "2024-12-10",
            "kind": "Article",
            "url": "https://www.example.org/2024/12/10/modeles-ouverts/",
        },
        {
            "title": "L'IA et la fin du travail ?",
            "date": "2024-11-28",
            "kind": "Vidéo",
            "url": "https://www.example.org/2024/11/28/ia-travail/",
        },
        {
            "title": "Le Pape François et l'éthique des machines",
            "date": "2025-01-05",
            "kind": "Podcast",
            "url": "https://www.example.org/podcast/pape-ethique",
        },
    ]


def test_windows_line_endings_and_non_breaking_spaces_change_nothing(
    parsed: ParsedDraft, fixture_text: str
) -> None:
    word_processor = (
        fixture_text.replace(" ?", "\u00a0?").replace(" :", "\u202f:").replace("\n", "\r\n")
    )
    again = parse_draft(word_processor)
    assert [i["source_name"] for i in again.edition["items"]] == [
        i["source_name"] for i in parsed.edition["items"]
    ]
    assert [i["date"] for i in again.edition["items"]] == [
        i["date"] for i in parsed.edition["items"]
    ]
    assert [(p.line, p.reason) for p in again.problems] == [
        (p.line, p.reason) for p in parsed.problems
    ]
    assert again.edition["week_start"] == "2024-12-28"


@pytest.mark.parametrize(
    ("week", "start", "end", "label"),
    [
        ("Semaine du 18 au 25 janvier 2025", "2025-01-18", "2025-01-25", None),
        ("Semaine du 30 janvier au 6 février 2025", "2025-01-30", "2025-02-06", None),
        ("Semaine du 28 décembre 2024 au 4 janvier 2025", "2024-12-28", "2025-01-04", None),
        (
            "Week of 18\u201325 January 2025",
            "2025-01-18",
            "2025-01-25",
            "Semaine du 18 au 25 janvier 2025",
        ),
        (
            "Week of January 30 \u2013 February 6, 2025",
            "2025-01-30",
            "2025-02-06",
            "Semaine du 30 janvier au 6 février 2025",
        ),
        (
            "Semaine du 25 janvier au 1er février 2025",
            "2025-01-25",
            "2025-02-01",
            None,
        ),
    ],
)
def test_week_line_in_french_or_english(week: str, start: str, end: str, label: str | None) -> None:
    result = parse_draft(_draft("", week=week))
    assert (result.edition["week_start"], result.edition["week_end"]) == (start, end)
    assert result.edition["subject"] == f"Intelligence & Société \u2014 {label or week}"
    assert result.problems == []


def test_english_edition_labels_its_week_in_english() -> None:
    result = parse_draft(_draft("", week="Semaine du 28 décembre 2024 au 4 janvier 2025"),
                         language="en")  # fmt: skip
    assert result.edition["subject"] == (
        "Intelligence & Société \u2014 Week of 28 December 2024 \u2013 4 January 2025"
    )


@pytest.mark.parametrize(
    ("date_line", "reason"),
    [
        ("Le 31 février 2025", "date line does not name a real day"),
        ("Le 32 janvier", "date line does not name a real day"),
        ("Le 12 foobar 2025", "unknown month name in date line"),
    ],
)
def test_malformed_date_is_a_problem_not_an_exception(date_line: str, reason: str) -> None:
    text = _draft(f"Un titre d'article\n\n{date_line}\n\nLe corps.\n\nLire plus ? [Le Monde](#)\n")
    result = parse_draft(text)
    [item] = result.edition["items"]
    assert (item["title"], item["date"], item["source_name"]) == (
        "Un titre d'article",
        None,
        "Le Monde",
    )
    assert result.problems == [DraftProblem(_line_of(text, date_line), date_line, reason)]


def test_item_without_date_line_is_kept_and_reported() -> None:
    text = _draft(
        "Premier titre\n\nLe 20 janvier 2025\n\nCorps un.\n\nLire plus ? [A](#)\n\n"
        "Titre sans date\n\nCorps deux.\n\nLire plus ? [B](https://b.example/x)\n"
    )
    result = parse_draft(text)
    assert [(i["date"], i["title"], i["body"]) for i in result.edition["items"]] == [
        ("2025-01-20", "Premier titre", "Corps un."),
        (None, "Titre sans date", "Corps deux."),
    ]
    assert result.problems == [
        DraftProblem(
            _line_of(text, "Titre sans date"),
            "Titre sans date",
            "news item has no date line ('Le <day> <month> <year>')",
        )
    ]


def test_date_without_year_and_unreadable_week_is_reported() -> None:
    text = _draft("Titre\n\nLe 22 janvier\n\nCorps.\n", week="Semaine de la rentrée")
    result = parse_draft(text)
    assert result.edition["week_start"] is None
    assert result.edition["items"][0]["date"] is None
    assert [(p.line, p.reason) for p in result.problems] == [
        (_line_of(text, "Semaine"), "could not read the week dates"),
        (_line_of(text, "Le 22"), "date has no year and the week line could not be read"),
    ]
    assert result.edition["subject"] == "Intelligence & Société \u2014 Semaine de la rentrée"


@pytest.mark.parametrize(
    ("read_more", "name", "url"),
    [
        ("Lire plus ? L'article dans [Le Devoir](#)", "Le Devoir", None),
        ("Lire plus? [Le Devoir](https://www.ledevoir.com/a)", "Le Devoir", "https://www.ledevoir.com/a"),
        ("Lire plus : [Le Devoir](https://www.ledevoir.com/a).", "Le Devoir", "https://www.ledevoir.com/a"),
        ("Lire plus\u00a0? L\u2019article du [Financial Times]()", "Financial Times", None),
        ("**Lire plus ?** [France Info](#)", "France Info", None),
        ("Lire plus ? L\u2019article dans Le Devoir.", "Le Devoir", None),
        ("Lire plus ? https://www.ledevoir.com/a", "ledevoir.com", "https://www.ledevoir.com/a"),
        ("Lire plus ?\n\n[Le Devoir](https://www.ledevoir.com/a)", "Le Devoir", "https://www.ledevoir.com/a"),
    ],
)  # fmt: skip
def test_read_more_line_variants(read_more: str, name: str, url: str | None) -> None:
    result = parse_draft(_draft(f"Titre\n\nLe 20 janvier 2025\n\nCorps.\n\n{read_more}\n"))
    [item] = result.edition["items"]
    assert (item["body"], item["source_name"], item["source_url"]) == ("Corps.", name, url)
    assert result.problems == []


def test_feedback_prompt_is_ignored_but_text_after_it_is_not() -> None:
    text = _draft(
        "Titre\n\nLe 20 janvier 2025\n\nCorps.\n\n"
        "Avez-vous apprécié ce contenu ?\n\nOui / Non\n\nÉcrivez-nous vos remarques.\n"
    )
    result = parse_draft(text)
    assert result.edition["items"][0]["body"] == "Corps."
    assert result.problems == [
        DraftProblem(
            _line_of(text, "Écrivez"),
            "Écrivez-nous vos remarques.",
            "text after the feedback prompt",
        )
    ]


def test_text_without_structure_is_never_dropped() -> None:
    text = "Bonjour\n\nCeci n'est pas une édition.\nEncore une ligne."
    result = parse_draft(text)
    placed = {result.edition["title"]} | {p.text for p in result.problems}
    assert {"Bonjour", "Ceci n'est pas une édition.", "Encore une ligne."} <= placed


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        parse_draft("", language="de")


def test_real_seed_edition_parses_without_problems() -> None:
    seed = os.environ.get(SEED_ENV)
    if not seed:
        pytest.skip(f"{SEED_ENV} is not set: no real seed edition to parse (.ci/run sets it)")
    result = parse_draft(Path(seed).read_text(encoding="utf-8"))
    edition = result.edition
    assert result.problems == []
    assert edition["title"] == "Intelligence & Société"
    assert (edition["week_start"], edition["week_end"]) == ("2025-01-18", "2025-01-25")
    assert edition["authors"] == ["Paul Jorion", "Jueun Ahn"]
    assert edition["image"] == {"url": None, "alt": "", "credit": "Illustration par DALL \u2022 E"}
    assert [(i["date"], i["source_name"], i["source_url"]) for i in edition["items"]] == [
        ("2024-11-27", "ChinaTalk", None),
        ("2025-01-22", "France Info", None),
        ("2025-01-22", "Vatican News", None),
        ("2025-01-22", "Le Devoir", None),  # its date line has no year
        ("2025-01-24", "MIT Technology Review", None),
        ("2025-01-25", "Financial Times", None),
    ]
    assert edition["items"][3]["title"].startswith("Elon Musk critique le projet")
    assert "la start-up chinoise révolutionnaire" in edition["synthesis"]
    assert edition["synthesis"].count("\n## ") == 5
    assert "deuxième dirigeant le plus puissant du pays." in edition["items"][5]["body"]
    assert "semi-conducteurs avancés vers la Chine" in edition["items"][1]["body"]
    assert len(edition["preheader"]) <= 140


@pytest.mark.parametrize(
    ("line", "authors"),
    [
        ("Paul Jorion & [Jueun Ahn](#)", ["Paul Jorion", "Jueun Ahn"]),
        ("Par **Paul Jorion**, Marie Curie and [Jueun Ahn](https://x.example)",
         ["Paul Jorion", "Marie Curie", "Jueun Ahn"]),
        ("Paul Jorion et al.", ["Paul Jorion et al."]),
    ],
)  # fmt: skip
def test_authors_line_is_split_into_names(line: str, authors: list[str]) -> None:
    text = _draft("").replace("Paul Jorion & [Jueun Ahn](#)", line)
    assert parse_draft(text).edition["authors"] == authors
