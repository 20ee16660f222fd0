"""French fact patterns: the same slots as the English ones (so ``likes:jazz`` is one slot
whatever the language), with the facts written in French for a French persona."""

from __future__ import annotations

import re

from eva.conversation.facts.common import (
    NOT_A_THING,
    Builder,
    Pattern,
    clean_value,
    second_person,
    slot_name,
    third_person,
    word_set,
)
from eva.store.memories import NewMemory

_I = re.IGNORECASE
_NAME = r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'-]+"
_NOT_A_NAME = word_set("pas plus comme bien là ici tout juste encore vraiment")
_RELATIONS = {
    "sœur": "sister", "soeur": "sister", "frère": "brother", "mère": "mother",
    "maman": "mother", "père": "father", "papa": "father", "femme": "wife", "mari": "husband",
    "copine": "girlfriend", "copain": "boyfriend", "compagne": "partner",
    "compagnon": "partner", "fils": "son", "fille": "daughter", "meilleure amie": "best friend",
    "meilleur ami": "best friend", "amie": "friend", "ami": "friend", "patron": "boss",
    "patronne": "boss", "grand-mère": "grandmother", "mamie": "grandmother",
    "grand-père": "grandfather", "papi": "grandfather", "tante": "aunt", "oncle": "uncle",
    "cousine": "cousin", "cousin": "cousin", "chien": "dog", "chat": "cat", "chatte": "cat",
}  # fmt: skip
_FEMININE = word_set(
    "sœur soeur mère maman femme copine compagne fille amie patronne grand-mère mamie tante "
    "cousine chatte"
) | {"meilleure amie"}
_REL = "|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True))
_FEELINGS = (
    r"fatiguée?|stressée?|triste|contente?|heureux|heureuse|inquiète|inquiet|épuisée?|"
    r"déprimée?|nerveux|nerveuse|seule?|malade|énervée?|angoissée?|excitée?|ravie?|"
    r"débordée?|fière?"
)
_EVENTS = "entretien|examen|rendez-vous|réunion|mariage|fête|concert|opération|voyage|match"
_JOBS = (
    r"infirmière|infirmier|professeure?|prof|médecin|ingénieure?|étudiante?|avocate?|"
    r"développeur|développeuse|boulangère?|boulanger|cuisinière?|cuisinier|architecte|"
    r"journaliste|retraitée?|vendeur|vendeuse|comptable|musicienne?|musicien|artiste|"
    r"serveur|serveuse|chauffeur|pharmacienne?|pharmacien|chercheuse|chercheur"
)
_VALUE = r"(?P<v>[^.!?;]+)"


def _fact(key: str, kind: str, text: str, value: str | None) -> NewMemory:
    return NewMemory(key=key, kind=kind, text=text, value=value)


def _name(match: re.Match[str], sentence: str) -> NewMemory | None:
    name = match.group("v")
    if name.lower() in _NOT_A_NAME:
        return None
    name = name[0].upper() + name[1:]
    return _fact("name", "name", f"Son prénom est {name}.", name)


def _place(key: str, template: str) -> Builder:
    def build(match: re.Match[str], sentence: str) -> NewMemory | None:
        place = clean_value(match.group("v"))
        if place is None or place.lower() in NOT_A_THING:
            return None
        prep = match.group("prep").lower()
        return _fact(key, "place", template.format(f"{prep} {place}"), f"{prep} {place}")

    return build


def _age(match: re.Match[str], sentence: str) -> NewMemory | None:
    return _fact("age", "age", f"A {match.group('v')} ans.", match.group("v"))


def _job(match: re.Match[str], sentence: str) -> NewMemory | None:
    job = clean_value(match.group("v"))
    if job is None:
        return None
    return _fact("job", "job", f"Travaille {third_person(job, 'fr')}.", second_person(job, "fr"))


def _profession(match: re.Match[str], sentence: str) -> NewMemory | None:
    job = match.group("v")
    return _fact("job", "job", f"Est {job}.", job)


def _taste(liked: bool) -> Builder:
    def build(match: re.Match[str], sentence: str) -> NewMemory | None:
        thing = clean_value(match.group("v"))
        if thing is None or thing.lower() in NOT_A_THING:
            return None
        verb = match.group("verb").lower()
        shown = third_person(thing, "fr")
        if liked:
            text = f"{'Adore' if verb == 'adore' else 'Aime'} {shown}."
        else:
            text = f"N'aime plus {shown}." if "plus" in verb else f"N'aime pas {shown}."
        return _fact(
            f"likes:{slot_name(thing)}",
            "like" if liked else "dislike",
            text,
            second_person(thing, "fr"),
        )

    return build


def _relation(match: re.Match[str], sentence: str) -> NewMemory | None:
    word = match.group("rel").lower()
    relation = _RELATIONS[word]
    name = match.group("name")
    if name.lower() in _NOT_A_NAME:
        return None
    name = name[0].upper() + name[1:]
    kind_key = f"pet:{relation}" if relation in ("dog", "cat") else f"relation:{relation}"
    owner = "Sa" if word in _FEMININE else "Son"
    return _fact(kind_key, "relation", f"{owner} {word} s'appelle {name}.", name)


def _plan(match: re.Match[str], sentence: str) -> NewMemory | None:
    plan = clean_value(match.group("v"))
    if plan is None or len(plan.split()) < 2:
        return None
    words = [w for w in re.findall(r"\w+", plan.lower()) if len(w) > 3]
    return _fact(
        f"plan:{' '.join(words[:2])}",
        "plan",
        f"A dit qu'il ou elle allait {third_person(plan, 'fr')}.",
        f"tu allais {second_person(plan, 'fr')}",
    )


def _leaving(match: re.Match[str], sentence: str) -> NewMemory | None:
    place = clean_value(match.group("v"))
    if place is None:
        return None
    plan = f"partir {match.group('prep').lower()} {place}"
    words = [w for w in re.findall(r"\w+", place.lower()) if len(w) > 3]
    return _fact(
        f"plan:partir {' '.join(words[:1])}".strip(),
        "plan",
        f"A dit qu'il ou elle allait {plan}.",
        f"tu allais {plan}",
    )


def _event(match: re.Match[str], sentence: str) -> NewMemory | None:
    value = clean_value(match.group("v"))
    if value is None:
        return None
    noun = match.group("noun").lower()
    article = match.group("a").lower()
    return _fact(f"event:{noun}", "event", f"A {article} {value}.", f"ton {noun}")


def _feeling(match: re.Match[str], sentence: str) -> NewMemory | None:
    feeling = match.group("v").lower()
    return _fact("feeling", "feeling", f"A dit se sentir {feeling}.", feeling)


def _p(regex: str, build: Builder, flags: int = _I) -> Pattern:
    return Pattern(re.compile(regex, flags), build)


_PREP = r"(?P<prep>à|a|en|au|aux|dans)"

PATTERNS: tuple[Pattern, ...] = (
    _p(rf"\bje m'appelle (?P<v>{_NAME})", _name),
    _p(rf"\bmon (?:pré)?nom(?:,)? (?:c'est|est) (?P<v>{_NAME})", _name),
    _p(rf"\b(?:appelle-moi|appelez-moi|on m'appelle) (?P<v>{_NAME})", _name),
    _p(r"\bmoi,? c'est (?P<v>[A-ZÀ-Ý][a-zà-ÿ'-]+)", _name, 0),
    _p(rf"\bj'habite {_PREP} {_VALUE}", _place("lives_in", "Habite {}.")),
    _p(rf"\bje vis {_PREP} {_VALUE}", _place("lives_in", "Vit {}.")),
    _p(
        rf"\b(?:j'ai déménagé|je viens de déménager|je me suis installée?) {_PREP} {_VALUE}",
        _place("lives_in", "Habite {} (a déménagé)."),
    ),
    # A capital after "de": a place ("je viens de Lyon"), not "je viens de finir".
    _p(
        r"\b[Jj]e viens (?P<prep>de|du|des|d') ?(?P<v>[A-ZÀ-Ý][^.!?;]*)",
        _place("from", "Vient {}."),
        0,
    ),
    _p(r"\bj'ai (?P<v>\d{1,3}) ans\b", _age),
    _p(r"\bje travaille (?P<v>(?:comme|chez|à|dans|pour|en) [^.!?;]+)", _job),
    _p(rf"\bje suis (?:une? )?(?P<v>{_JOBS})\b", _profession),
    _p(
        rf"\bj'(?P<verb>aime|adore)(?: bien| beaucoup| vraiment| trop| énormément)?"
        rf" (?!pas\b|plus\b){_VALUE}",
        _taste(True),
    ),
    _p(
        rf"\b(?:je |j')(?P<verb>déteste|n'aime (?:vraiment )?(?:pas|plus)|aime pas|aime plus|"
        rf"ne supporte pas|supporte pas)(?: du tout| trop| beaucoup)? {_VALUE}",
        _taste(False),
    ),
    _p(rf"\b(?:mon|ma) (?P<rel>{_REL}) s'appelle (?P<name>{_NAME})", _relation),
    _p(
        rf"\bj'ai une? (?P<rel>{_REL}) (?:qui s'appelle|nommée?|appelée?) (?P<name>{_NAME})",
        _relation,
    ),
    _p(r"\bje (?:vais|compte|pense|prévois de|dois) (?P<v>\w+(?:er|ir|re|oir)\b[^.!?;]+)", _plan),
    _p(rf"\bje pars (?P<prep>à|a|en|au|aux|pour) {_VALUE}", _leaving),
    _p(rf"\bj'ai (?P<a>une?|mon|ma) (?P<v>(?P<noun>{_EVENTS})\b[^.!?;]*)", _event),
    _p(
        rf"\bje (?:suis|me sens)(?: vraiment| très| un peu| assez| tellement| trop)?"
        rf" (?P<v>{_FEELINGS})\b",
        _feeling,
    ),
)
