"""English fact patterns. Each builder gets the match and its sentence and returns one fact
(or None when the words turn out not to be one)."""

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
# Words that follow "call me" or "I'm" but are not names.
_NOT_A_NAME = word_set(
    "back later tomorrow tonight anytime sometime when if maybe please now again crazy old "
    "sure fine good ok okay tired here there so just not sorry glad happy sad home done "
    "i the and but so a an you eva"
)
_RELATIONS = {
    "sister": "sister", "brother": "brother", "mother": "mother", "mom": "mother",
    "mum": "mother", "father": "father", "dad": "father", "wife": "wife",
    "husband": "husband", "partner": "partner", "girlfriend": "girlfriend",
    "boyfriend": "boyfriend", "fiancé": "fiancé", "fiancée": "fiancée", "son": "son",
    "daughter": "daughter", "best friend": "best friend", "friend": "friend", "boss": "boss",
    "grandmother": "grandmother", "grandma": "grandmother", "grandfather": "grandfather",
    "grandpa": "grandfather", "aunt": "aunt", "uncle": "uncle", "cousin": "cousin",
    "niece": "niece", "nephew": "nephew", "roommate": "roommate", "colleague": "colleague",
}  # fmt: skip
_PETS = ("dog", "cat", "puppy", "kitten", "rabbit", "hamster", "parrot", "horse", "bird")
_REL = "|".join(sorted(map(re.escape, _RELATIONS), key=len, reverse=True))
_PET = "|".join(_PETS)
_FEELINGS = word_set(
    "happy sad tired stressed anxious lonely excited nervous worried exhausted depressed "
    "overwhelmed sick bored angry upset frustrated scared homesick down great proud "
    "heartbroken grateful"
)
_EVENTS = word_set(
    "interview exam test appointment meeting date wedding party surgery operation concert "
    "game match trip flight presentation deadline recital audition"
)
_JOB_WORDS = word_set(
    "nurse teacher doctor engineer student lawyer chef cook pilot designer developer "
    "programmer writer artist musician farmer baker accountant architect journalist "
    "photographer scientist researcher librarian mechanic electrician plumber carpenter "
    "pharmacist dentist therapist translator waiter waitress cashier manager consultant "
    "firefighter police officer soldier professor painter singer actor actress dancer "
    "driver veterinarian vet retiree freelancer"
)
_FUTURE = re.compile(
    r"\b(?:tomorrow|tonight|next|this (?:week|weekend|month|year|summer|winter|spring|fall|"
    r"evening|afternoon|morning)|soon|on (?:monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)|in \w+ (?:days?|weeks?|months?))\b",
    _I,
)


def _fact(key: str, kind: str, text: str, value: str | None) -> NewMemory:
    return NewMemory(key=key, kind=kind, text=text, value=value)


def _name(match: re.Match[str], sentence: str) -> NewMemory | None:
    name = match.group("v")
    if name.lower() in _NOT_A_NAME:
        return None
    name = name[0].upper() + name[1:]
    return _fact("name", "name", f"Their name is {name}.", name)


def _capitalized_name(match: re.Match[str], sentence: str) -> NewMemory | None:
    # "I'm Anna" but not "I'm tired": without a verb to go by, only a capitalized word.
    return _name(match, sentence) if match.group("v")[0].isupper() else None


def _place(key: str, template: str) -> Builder:
    def build(match: re.Match[str], sentence: str) -> NewMemory | None:
        place = clean_value(match.group("v"))
        if place is None or place.lower() in NOT_A_THING:
            return None
        return _fact(key, "place", template.format(third_person(place)), second_person(place))

    return build


def _age(match: re.Match[str], sentence: str) -> NewMemory | None:
    age = match.group("v")
    return _fact("age", "age", f"Is {age} years old.", age)


def _job(match: re.Match[str], sentence: str) -> NewMemory | None:
    job = clean_value(match.group("v"))
    if job is None:
        return None
    prep = (match.groupdict().get("prep") or "as").lower()
    key = "job" if prep == "as" else "workplace"
    return _fact(key, "job", f"Works {prep} {third_person(job)}.", second_person(job))


def _profession(match: re.Match[str], sentence: str) -> NewMemory | None:
    job = clean_value(match.group("v"))
    if job is None or job.split()[-1].lower() not in _JOB_WORDS:
        return None
    return _fact("job", "job", f"Is {job}.", job)


def _studies(match: re.Match[str], sentence: str) -> NewMemory | None:
    subject = clean_value(match.group("v"))
    if subject is None:
        return None
    return _fact("studies", "job", f"Studies {third_person(subject)}.", second_person(subject))


def _taste(liked: bool) -> Builder:
    def build(match: re.Match[str], sentence: str) -> NewMemory | None:
        thing = clean_value(match.group("v"))
        if thing is None or thing.lower() in NOT_A_THING:
            return None
        verb = match.group("verb").lower()
        shown = third_person(thing)
        if liked:
            text = f"{'Loves' if verb in ('love', 'adore') else 'Likes'} {shown}."
        else:
            still = bool(re.search(r"\b(?:any ?more|no longer)\b", sentence, _I))
            text = f"Does not like {shown}{' anymore' if still else ''}."
        return _fact(
            f"likes:{slot_name(thing)}", "like" if liked else "dislike", text, second_person(thing)
        )

    return build


def _favorite(match: re.Match[str], sentence: str) -> NewMemory | None:
    what = match.group("what").lower()
    value = clean_value(match.group("v"))
    if value is None:
        return None
    return _fact(
        f"favorite:{what}", "like", f"Their favorite {what} is {third_person(value)}.", value
    )


def _relation(match: re.Match[str], sentence: str) -> NewMemory | None:
    relation = _RELATIONS.get(match.group("rel").lower(), match.group("rel").lower())
    name = match.group("name")
    if name.lower() in _NOT_A_NAME or (match.group("how") is None and not name[0].isupper()):
        return None
    name = name[0].upper() + name[1:]
    article = "an" if relation[0] in "aeiou" else "a"
    return _fact(
        f"relation:{relation}", "relation", f"Has {article} {relation} named {name}.", name
    )


def _pet(match: re.Match[str], sentence: str) -> NewMemory | None:
    pet = match.group("rel").lower()
    name = match.groupdict().get("name")
    if name:
        name = name[0].upper() + name[1:]
        return _fact(f"pet:{pet}", "relation", f"Has a {pet} named {name}.", name)
    return _fact(f"pet:{pet}", "relation", f"Has a {pet}.", None)


def _about_relation(match: re.Match[str], sentence: str) -> NewMemory | None:
    relation = _RELATIONS.get(match.group("rel").lower(), match.group("rel").lower())
    rest = clean_value(match.group("v"))
    if rest is None:
        return None
    verb = rest.split()[0].lower()
    return _fact(
        f"about:{relation}:{verb}",
        "relation",
        f"Their {relation} {third_person(rest)}.",
        f"your {relation} {second_person(rest)}",
    )


def _plan(needs_time: bool) -> Builder:
    def build(match: re.Match[str], sentence: str) -> NewMemory | None:
        plan = clean_value(match.group("v"))
        if plan is None or (needs_time and not _FUTURE.search(plan)):
            return None
        what = re.sub(
            r"^(?:going to|gonna|planning to|planning on|about to|hoping to|plan to|"
            r"intend to)\s+",
            "",
            plan,
            flags=_I,
        )
        if len(what.split()) < 2:  # "I'm going to sleep": not a plan worth keeping
            return None
        said = match.group("said")
        words = [w for w in re.findall(r"[a-z]+", plan.lower()) if w not in _PLAN_FILLER]
        return _fact(
            f"plan:{' '.join(words[:2])}",
            "plan",
            f"Said {third_person(said)} {third_person(plan)}.",
            f"{second_person(said)} {second_person(plan)}",
        )

    return build


_PLAN_FILLER = word_set("to the a an my go going visit see")


def _event(match: re.Match[str], sentence: str) -> NewMemory | None:
    value = clean_value(match.group("v"))
    if value is None:
        return None
    noun = match.group("noun").lower()
    event = re.sub(rf"\b{noun}\b.*", noun, value, flags=_I)  # "job interview tomorrow"
    return _fact(f"event:{noun}", "event", f"Has {third_person(match.group('a'))} {value}.", event)


def _birthday(match: re.Match[str], sentence: str) -> NewMemory | None:
    when = clean_value(match.group("v"))
    if when is None:
        return None
    return _fact("birthday", "event", f"Their birthday is {when}.", when)


def _feeling(match: re.Match[str], sentence: str) -> NewMemory | None:
    feeling = match.group("v").lower()
    about = clean_value(match.group("about") or "")
    said = f"{feeling} {third_person(about)}" if about else feeling
    return _fact(
        "feeling",
        "feeling",
        f"Said they felt {said}.",
        f"{feeling} {second_person(about)}" if about else feeling,
    )


def _status(match: re.Match[str], sentence: str) -> NewMemory | None:
    status = clean_value(match.group("v"))
    if status is None:
        return None
    return _fact(
        f"status:{status.split()[0].lower()}", "about", f"Is {third_person(status)}.", status
    )


def _p(regex: str, build: Builder, flags: int = _I) -> Pattern:
    return Pattern(re.compile(regex, flags), build)


_ADVERB = r"(?:(?:really|absolutely|just|also|still|totally|truly|actually|honestly) )?"
_VALUE = r"(?P<v>[^.!?;]+)"

PATTERNS: tuple[Pattern, ...] = (
    _p(rf"\bmy name(?:'s| is) (?P<v>{_NAME})", _name),
    _p(
        rf"\b(?:call me|i'm called|i am called|people call me|everyone calls me) (?P<v>{_NAME})",
        _capitalized_name,
    ),
    _p(
        rf"^(?:(?:hi|hello|hey)[,!]? )?(?:i'm|i am|this is) (?P<v>{_NAME})[.!]?$", _capitalized_name
    ),
    _p(
        rf"\bi (?:live|am living|'m living|now live|'ve been living|have been living) in {_VALUE}",
        _place("lives_in", "Lives in {}."),
    ),
    _p(
        rf"\bi (?:just |recently )?(?:have |'ve )?moved to {_VALUE}",
        _place("lives_in", "Lives in {} (moved there)."),
    ),
    _p(rf"\bi(?:'m| am) (?:originally )?from {_VALUE}", _place("from", "Is from {}.")),
    _p(rf"\bi was born in {_VALUE}", _place("from", "Was born in {}.")),
    _p(r"\bi(?:'m| am) (?P<v>\d{1,3}) years? old\b", _age),
    _p(r"\bi just turned (?P<v>\d{1,3})\b", _age),
    _p(rf"\bi work (?P<prep>as|at|for|in) {_VALUE}", _job),
    _p(r"\bmy job is (?P<v>[^.!?;]+)", _job),
    _p(r"\bi(?:'m| am) (?P<v>an? (?:[a-z]+ )?[a-z]+)(?:[.!,]|$| and\b| at\b| in\b)", _profession),
    _p(rf"\bi(?:'m| am) studying {_VALUE}", _studies),
    _p(rf"\bi study {_VALUE}", _studies),
    _p(rf"\bi {_ADVERB}(?P<verb>love|like|enjoy|adore)\s+(?!to be\b){_VALUE}", _taste(True)),
    _p(
        rf"\bi(?:'m| am) {_ADVERB}(?P<verb>into|(?:a )?(?:big |huge )?fan of|passionate about)"
        rf" {_VALUE}",
        _taste(True),
    ),
    _p(
        rf"\bi {_ADVERB}(?P<verb>hate|dislike|can't stand|cannot stand|detest|don't like|"
        rf"do not like|don't enjoy|do not enjoy|don't love|no longer like|don't really like|"
        rf"no longer enjoy) {_VALUE}",
        _taste(False),
    ),
    _p(
        rf"\bi(?:'m| am) (?P<verb>not (?:really )?(?:into|a (?:big )?fan of)) {_VALUE}",
        _taste(False),
    ),
    _p(rf"\bmy favou?rite (?P<what>[a-z]+) (?:is|are) {_VALUE}", _favorite),
    _p(
        rf"\b[Mm]y (?P<rel>{_REL})(?P<how>'s name is| is called| is named| named| called)?,?"
        rf" (?P<name>{_NAME})",
        _relation,
        0,
    ),
    _p(
        rf"\bi (?:have|'ve got|have got) an? (?P<rel>{_REL}) (?P<how>named|called) "
        rf"(?P<name>{_NAME})",
        _relation,
    ),
    _p(
        rf"\bi (?:have|'ve got|have got) an? (?P<rel>{_PET})"
        rf"(?: (?:named|called) (?P<name>{_NAME}))?",
        _pet,
    ),
    _p(
        rf"\b[Mm]y (?P<rel>{_PET})(?:'s name is| is called| is named| named| called) "
        rf"(?P<name>{_NAME})",
        _pet,
    ),
    _p(
        rf"\bmy (?P<rel>{_REL})(?: {_NAME})? (?P<v>(?:just |recently |still )?"
        rf"(?:lives|works|moved|studies|is getting|is having|is going|got|has|had|loves|"
        rf"hates)\b[^.!?;]+)",
        _about_relation,
    ),
    _p(
        r"\b(?P<said>i(?:'m| am)) (?:really )?(?P<v>(?:going to|gonna|planning to|planning on|"
        r"about to|hoping to) [^.!?;]+)",
        _plan(False),
    ),
    _p(r"\b(?P<said>i) (?P<v>(?:plan|intend) to [^.!?;]+)", _plan(False)),
    _p(
        r"\b(?P<said>i(?:'m| am)) (?P<v>(?:visiting|flying|travell?ing|moving|starting|"
        r"getting married|leaving|heading|taking|seeing|meeting|running)\b[^.!?;]+)",
        _plan(True),
    ),
    _p(
        rf"\bi (?:have|'ve got|have got|got) (?P<a>an?|my) (?P<v>(?:[a-z]+ ){{0,2}}"
        rf"(?P<noun>{'|'.join(_EVENTS)})\b[^.!?;]*)",
        _event,
    ),
    _p(rf"\bmy birthday is (?:on )?{_VALUE}", _birthday),
    _p(
        rf"\bi(?:'m| am| feel| felt|'ve been feeling|'ve been| have been| have been feeling|"
        rf"'m feeling| am feeling)(?: really| so| very| a bit| pretty| quite| a little| kind of|"
        rf" kinda| super| extremely)? (?P<v>{'|'.join(_FEELINGS)})\b"
        rf"(?P<about> (?:about|because|since|for) [^.!?;]+)?",
        _feeling,
    ),
    _p(
        r"\bi(?:'m| am) (?P<v>vegetarian|vegan|allergic to [^.!?;,]+|diabetic|pregnant|"
        r"retired|married|single|divorced|engaged|widowed)\b",
        _status,
    ),
)
