//! Countries, cities, street addresses, postcodes and stores.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

/// Countries the simulated customers live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Country {
    De,
    Fr,
    Gb,
    Us,
    Es,
    It,
    Nl,
}

impl Country {
    /// Every supported country.
    pub const ALL: [Country; 7] = [
        Country::De,
        Country::Fr,
        Country::Gb,
        Country::Us,
        Country::Es,
        Country::It,
        Country::Nl,
    ];

    /// Draws a country with a Europe-heavy customer base.
    pub fn pick(rng: &mut StdRng) -> Country {
        const WEIGHTS: [(Country, u32); 7] = [
            (Country::De, 30),
            (Country::Fr, 15),
            (Country::Gb, 15),
            (Country::Us, 20),
            (Country::Es, 7),
            (Country::It, 7),
            (Country::Nl, 6),
        ];
        let mut x = rng.random_range(0..100);
        for (c, w) in WEIGHTS {
            if x < w {
                return c;
            }
            x -= w;
        }
        Country::De
    }

    /// ISO 3166-1 alpha-2 code.
    pub fn code(self) -> &'static str {
        match self {
            Country::De => "DE",
            Country::Fr => "FR",
            Country::Gb => "GB",
            Country::Us => "US",
            Country::Es => "ES",
            Country::It => "IT",
            Country::Nl => "NL",
        }
    }

    /// Ways humans write the country in a free-text field.
#[rustfmt::skip]
    pub fn spellings(self) -> &'static [&'static str] {
        match self {
            Country::De => &["Germany", "Deutschland", "de", "GER"],
            Country::Fr => &["France", "fr", "FRA"],
            Country::Gb => &["United Kingdom", "UK", "England", "gb"],
            Country::Us => &["USA", "United States", "us", "U.S."],
            Country::Es => &["Spain", "España", "es"],
            Country::It => &["Italy", "Italia", "it"],
            Country::Nl => &["Netherlands", "Nederland", "Holland", "nl"],
        }
    }

    /// Hours to add to UTC to get (standard) local time, for shop opening hours.
    pub fn utc_offset_hours(self) -> i64 {
        match self {
            Country::Gb => 0,
            Country::Us => -6,
            _ => 1,
        }
    }

    /// Currency a customer from this country most likely pays in.
    pub fn currency(self, rng: &mut StdRng) -> &'static str {
        match self {
            Country::Us if rng.random_bool(0.9) => "USD",
            Country::Gb if rng.random_bool(0.85) => "GBP",
            _ if rng.random_bool(0.002) => "CHF",
            _ => "EUR",
        }
    }

    /// Cities customers live in.
    pub fn cities(self) -> &'static [City] {
        match self {
            Country::De => DE_CITIES,
            Country::Fr => FR_CITIES,
            Country::Gb => GB_CITIES,
            Country::Us => US_CITIES,
            Country::Es => ES_CITIES,
            Country::It => IT_CITIES,
            Country::Nl => NL_CITIES,
        }
    }

#[rustfmt::skip]
    fn streets(self) -> &'static [&'static str] {
        match self {
            Country::De => &[
                "Hauptstraße {n}", "Bahnhofstraße {n}", "Gartenstraße {n}", "Schulstraße {n}",
                "Lindenstraße {n}", "Goethestraße {n}", "Schillerstraße {n}", "Kastanienallee {n}",
                "Am Markt {n}", "Friedrichstraße {n}a", "Bergstraße {n}",
            ],
            Country::Fr => &[
                "{n} rue de la Paix", "{n} avenue Victor Hugo", "{n} boulevard Saint-Michel",
                "{n} rue des Lilas", "{n}, place de la République", "{n} chemin des Vignes",
                "{n} allée des Châtaigniers", "{n} bis rue Pasteur",
            ],
            Country::Gb => &[
                "{n} High Street", "{n} Station Road", "{n} Church Lane", "Flat {k}, {n} Victoria Road",
                "{n} Park Avenue", "{n} The Crescent", "{n} Mill Lane", "{n} King's Road",
            ],
            Country::Us => &[
                "{n}{k} Main St", "{n} Oak Ave", "{n}{k} Maple Street, Apt {k}", "{n} 5th Ave",
                "{n}{k} Elm St", "{n} Washington Blvd", "{n}{k} Lakeview Dr",
            ],
            Country::Es => &[
                "Calle Mayor {n}", "Calle de Alcalá {n}, {k}º B", "Avenida de la Constitución {n}",
                "Plaza de España {n}", "Calle Real {n}", "Paseo de Gracia {n}",
            ],
            Country::It => &[
                "Via Roma {n}", "Via Garibaldi {n}", "Corso Vittorio Emanuele II {n}",
                "Piazza del Duomo {n}", "Via Dante {n}", "Viale Europa {n}",
            ],
            Country::Nl => &[
                "Kerkstraat {n}", "Dorpsstraat {n}", "Molenweg {n}", "Prinsengracht {n}-II",
                "Stationsweg {n}", "Julianastraat {n}", "Hoofdstraat {n}",
            ],
        }
    }
}

/// A city with its postcode range and landline area code (national significant digits).
#[derive(Debug)]
pub struct City {
    pub name: &'static str,
    pub post_lo: u32,
    pub post_hi: u32,
    pub area: &'static str,
    /// GB outward-code letters; unused elsewhere.
    pub gb_prefix: &'static str,
}

const fn city(name: &'static str, post_lo: u32, post_hi: u32, area: &'static str) -> City {
    City {
        name,
        post_lo,
        post_hi,
        area,
        gb_prefix: "",
    }
}
const fn gb(name: &'static str, prefix: &'static str, area: &'static str) -> City {
    City {
        name,
        post_lo: 1,
        post_hi: 20,
        area,
        gb_prefix: prefix,
    }
}

#[rustfmt::skip]
static DE_CITIES: &[City] = &[
    city("Berlin", 10115, 14199, "30"), city("Hamburg", 20095, 22769, "40"),
    city("München", 80331, 81929, "89"), city("Köln", 50667, 51149, "221"),
    city("Frankfurt am Main", 60306, 60599, "69"), city("Stuttgart", 70173, 70629, "711"),
    city("Düsseldorf", 40210, 40629, "211"), city("Leipzig", 4103, 4357, "341"),
];
#[rustfmt::skip]
static FR_CITIES: &[City] = &[
    city("Paris", 75001, 75020, "14"), city("Lyon", 69001, 69009, "47"),
    city("Marseille", 13001, 13016, "49"), city("Toulouse", 31000, 31500, "56"),
    city("Bordeaux", 33000, 33800, "55"), city("Lille", 59000, 59800, "32"),
    city("Nantes", 44000, 44300, "24"),
];
#[rustfmt::skip]
static GB_CITIES: &[City] = &[
    gb("London", "SW", "20"), gb("Manchester", "M", "161"), gb("Birmingham", "B", "121"),
    gb("Leeds", "LS", "113"), gb("Glasgow", "G", "141"), gb("Bristol", "BS", "117"),
    gb("Edinburgh", "EH", "131"),
];
#[rustfmt::skip]
static US_CITIES: &[City] = &[
    city("New York", 10001, 10282, "212"), city("San Francisco", 94102, 94134, "415"),
    city("Chicago", 60601, 60661, "312"), city("Boston", 2108, 2137, "617"),
    city("Seattle", 98101, 98199, "206"), city("Austin", 78701, 78759, "512"),
    city("Denver", 80202, 80239, "303"),
];
#[rustfmt::skip]
static ES_CITIES: &[City] = &[
    city("Madrid", 28001, 28080, "91"), city("Barcelona", 8001, 8042, "93"),
    city("Valencia", 46001, 46026, "96"), city("Sevilla", 41001, 41020, "95"),
    city("Bilbao", 48001, 48015, "94"),
];
#[rustfmt::skip]
static IT_CITIES: &[City] = &[
    city("Roma", 118, 199, "06"), city("Milano", 20121, 20162, "02"),
    city("Napoli", 80121, 80147, "081"), city("Torino", 10121, 10156, "011"),
    city("Firenze", 50121, 50145, "055"),
];
#[rustfmt::skip]
static NL_CITIES: &[City] = &[
    city("Amsterdam", 1011, 1109, "20"), city("Rotterdam", 3011, 3089, "10"),
    city("Utrecht", 3511, 3585, "30"), city("Den Haag", 2491, 2599, "70"),
    city("Eindhoven", 5611, 5658, "40"),
];

/// Letters allowed in the inward part of a UK postcode.
const GB_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

/// A postal address as stored in the CRM.
#[derive(Debug, Clone)]
pub struct Address {
    pub street: String,
    pub city: &'static City,
    pub postcode: String,
}

impl Address {
    /// Draws a random address in `country`.
    pub fn random(country: Country, rng: &mut StdRng) -> Address {
        let cities = country.cities();
        let city = &cities[rng.random_range(0..cities.len())];
        let streets = country.streets();
        let template = streets[rng.random_range(0..streets.len())];
        let n = rng.random_range(1..=140u32).to_string();
        let k = rng.random_range(1..=9u32).to_string();
        let street = template.replace("{n}", &n).replace("{k}", &k);
        let postcode = match country {
            Country::Gb => {
                let a = GB_LETTERS[rng.random_range(0..GB_LETTERS.len())] as char;
                let b = GB_LETTERS[rng.random_range(0..GB_LETTERS.len())] as char;
                let d = rng.random_range(city.post_lo..=city.post_hi);
                format!("{}{} {}{a}{b}", city.gb_prefix, d, rng.random_range(1..=9))
            }
            Country::Nl => {
                let a = (b'A' + rng.random_range(0..26u8)) as char;
                let b = (b'A' + rng.random_range(0..26u8)) as char;
                format!("{} {a}{b}", rng.random_range(city.post_lo..=city.post_hi))
            }
            _ => format!("{:05}", rng.random_range(city.post_lo..=city.post_hi)),
        };
        Address {
            street,
            city,
            postcode,
        }
    }
}

/// Abbreviates or re-spells a street the way a second data-entry clerk would.
pub fn street_variant(street: &str, rng: &mut StdRng) -> String {
    const SWAPS: &[(&str, &[&str])] = &[
        ("straße", &["str.", "strasse", "Str."]),
        ("Street", &["St", "St."]),
        ("Road", &["Rd", "Rd."]),
        ("Avenue", &["Ave"]),
        ("avenue", &["av.", "ave"]),
        ("boulevard", &["bd", "blvd"]),
        ("Calle", &["C/", "c/"]),
        ("Via", &["V."]),
        ("straat", &["str."]),
    ];
    for (from, tos) in SWAPS {
        if street.contains(from) {
            let to = tos.choose(rng).copied().unwrap_or(from);
            return street.replacen(from, to, 1);
        }
    }
    street.to_lowercase()
}

/// A physical store, referenced by the POS system.
#[derive(Debug, Clone)]
pub struct Store {
    pub id: String,
    pub country: Country,
    pub city: &'static str,
}

/// One or two stores in every city, with ids like `S014`.
pub fn stores() -> Vec<Store> {
    let mut out = Vec::new();
    for country in Country::ALL {
        for (i, c) in country.cities().iter().enumerate() {
            let copies = if i < 2 { 2 } else { 1 };
            for _ in 0..copies {
                out.push(Store {
                    id: format!("S{:03}", out.len() + 1),
                    country,
                    city: c.name,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn addresses_are_plausible() {
        let mut rng = StdRng::seed_from_u64(1);
        for c in Country::ALL {
            for _ in 0..50 {
                let a = Address::random(c, &mut rng);
                assert!(!a.street.contains('{'), "{}", a.street);
                assert!(a.postcode.len() >= 5, "{}", a.postcode);
            }
        }
        assert!(stores().iter().any(|s| s.city == "Berlin"));
        assert!(stores().iter().any(|s| s.country == Country::Us));
    }
}
