//! Phone numbers in plausibly valid national ranges, rendered the many ways
//! people and systems write them.
//!
//! Every number passes `phonenumber::is_valid` (crate 0.3.10, metadata 9.0.33), and
//! every [`Phone::render`] style parses back to the same E.164 number when the
//! person's country is given as the default region. (Italian mobiles avoid 39x
//! prefixes, which that parser mistakes for the +39 country code.)

use super::geo::{City, Country};
use rand::rngs::StdRng;
use rand::Rng;

/// A phone number split into its national significant parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    pub country: Country,
    /// Area code or mobile prefix (national significant digits, no trunk prefix).
    pub area: String,
    /// Subscriber digits.
    pub sub: String,
    pub mobile: bool,
}

/// Number of distinct [`Phone::render`] styles.
pub const STYLES: u8 = 8;

/// Junk values typed into phone fields.
pub const JUNK: &[&str] = &[
    "000000",
    "n/a",
    "N/A",
    "-",
    "0",
    "123456",
    "none",
    "0000000000",
    "?",
];

fn digits(rng: &mut StdRng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    for i in 0..n {
        // Subscriber numbers never start with 0 or 1.
        let d = if i == 0 {
            rng.random_range(2..10u8)
        } else {
            rng.random_range(0..10u8)
        };
        s.push((b'0' + d) as char);
    }
    s
}

impl Phone {
    /// Draws a personal number: a mobile, or a landline in the person's city.
    pub fn random(country: Country, city: &City, rng: &mut StdRng) -> Phone {
        let mobile = country == Country::Us || rng.random_bool(0.7);
        let (area, sub_len): (String, usize) = match (country, mobile) {
            (Country::De, true) => {
                const P: &[&str] = &[
                    "151", "152", "157", "160", "162", "170", "171", "172", "173", "175", "176",
                    "177", "178", "179",
                ];
                let p = P[rng.random_range(0..P.len())];
                (p.to_string(), if p.starts_with("15") { 8 } else { 7 })
            }
            (Country::Fr, true) => {
                const P: &[&str] = &[
                    "60", "61", "62", "64", "65", "66", "67", "68", "75", "76", "77", "78",
                ];
                (P[rng.random_range(0..P.len())].to_string(), 7)
            }
            (Country::Gb, true) => {
                let p = if rng.random_bool(0.6) {
                    format!("77{}{}", rng.random_range(1..=7), rng.random_range(0..10))
                } else {
                    format!("79{}{}", rng.random_range(4..=9), rng.random_range(0..10))
                };
                (p, 6)
            }
            (Country::Us, _) => {
                // Area code of the city, then an exchange that is not N11 or 555.
                let mut ex = rng.random_range(200..1000u32);
                while ex % 100 == 11
                    || ex == 555
                    || ex == 950
                    || ex == 958
                    || ex == 959
                    || ex == 976
                {
                    ex = rng.random_range(200..1000u32);
                }
                return Phone {
                    country,
                    area: city.area.to_string(),
                    sub: format!("{ex}{:04}", rng.random_range(0..10_000u32)),
                    mobile: true,
                };
            }
            (Country::Es, true) => (
                format!("6{}{}", rng.random_range(0..10), rng.random_range(0..10)),
                6,
            ),
            (Country::It, true) => {
                const P: &[&str] = &[
                    "320", "328", "329", "333", "334", "335", "338", "339", "340", "347", "348",
                    "349", "366", "368", "388",
                ];
                (P[rng.random_range(0..P.len())].to_string(), 7)
            }
            (Country::Nl, true) => (format!("6{}", rng.random_range(1..=5)), 7),
            (Country::De, false) => (city.area.to_string(), 7),
            (Country::Fr, false) => (city.area.to_string(), 7),
            (Country::Gb, false) => {
                if city.area == "20" {
                    const P: &[&str] = &["3", "7", "8"];
                    let lead = P[rng.random_range(0..P.len())];
                    let sub = format!("{lead}{}", digits(rng, 7));
                    return Phone {
                        country,
                        area: city.area.to_string(),
                        sub,
                        mobile,
                    };
                }
                let sub = format!("{}{}", rng.random_range(2..=4), digits(rng, 6));
                return Phone {
                    country,
                    area: city.area.to_string(),
                    sub,
                    mobile,
                };
            }
            (Country::Es, false) => (city.area.to_string(), 7),
            (Country::It, false) => (
                city.area.to_string(),
                if city.area.len() == 2 { 8 } else { 7 },
            ),
            (Country::Nl, false) => (city.area.to_string(), 7),
        };
        let sub = digits(rng, sub_len);
        Phone {
            country,
            area,
            sub,
            mobile,
        }
    }

    /// Country calling code without `+`.
    pub fn calling_code(&self) -> &'static str {
        match self.country {
            Country::De => "49",
            Country::Fr => "33",
            Country::Gb => "44",
            Country::Us => "1",
            Country::Es => "34",
            Country::It => "39",
            Country::Nl => "31",
        }
    }

    /// National trunk prefix dialled before the area code ("0", or "" where none is used).
    fn trunk(&self) -> &'static str {
        match self.country {
            Country::De | Country::Fr | Country::Gb | Country::Nl => "0",
            Country::Us | Country::Es | Country::It => "",
        }
    }

    /// National significant number.
    pub fn nsn(&self) -> String {
        format!("{}{}", self.area, self.sub)
    }

    /// The number in E.164 form, e.g. `+491511234567`.
    pub fn e164(&self) -> String {
        format!("+{}{}", self.calling_code(), self.nsn())
    }

    /// Country-typical digit groups of the national significant number.
    fn groups(&self) -> Vec<String> {
        let nsn = self.nsn();
        let split = |sizes: &[usize]| {
            let mut out = Vec::new();
            let mut i = 0;
            for &s in sizes {
                if i >= nsn.len() {
                    break;
                }
                let j = (i + s).min(nsn.len());
                out.push(nsn[i..j].to_string());
                i = j;
            }
            if i < nsn.len() {
                out.push(nsn[i..].to_string());
            }
            out
        };
        match self.country {
            Country::De | Country::Nl => vec![self.area.clone(), self.sub.clone()],
            Country::Fr => split(&[1, 2, 2, 2, 2]),
            Country::Gb if self.mobile => split(&[4, 6]),
            Country::Gb if self.area == "20" => split(&[2, 4, 4]),
            Country::Gb => split(&[3, 3, 4]),
            Country::Us => split(&[3, 3, 4]),
            Country::Es => split(&[3, 3, 3]),
            Country::It if self.mobile => split(&[3, 3, 4]),
            Country::It => vec![self.area.clone(), self.sub.clone()],
        }
    }

    /// Renders the number in one of [`STYLES`] formats (taken modulo).
    ///
    /// National formats assume the person's country as the implied region.
    pub fn render(&self, style: u8) -> String {
        let cc = self.calling_code();
        let trunk = self.trunk();
        let g = self.groups();
        let first = g.first().cloned().unwrap_or_default();
        let rest = &g[1.min(g.len())..];
        match style % STYLES {
            0 => self.e164(),
            1 => format!("+{cc} {}", g.join(" ")),
            // Dialled from abroad; US callers use 011, so the US form is 1 + number instead.
            2 if self.country == Country::Us => format!("1{}", self.nsn()),
            2 => format!("00{cc}{}", self.nsn()),
            3 => format!("{trunk}{}", g.join(" ")),
            4 => format!("{trunk}{}", self.nsn()),
            5 => match self.country {
                Country::De => format!("{trunk}{}/{}", self.area, self.sub),
                Country::Fr => format!("{trunk}{}", g.join(".")),
                Country::Gb => format!("({trunk}{first}) {}", rest.join(" ")),
                Country::Us => format!("({first}) {}", rest.join("-")),
                Country::Es => g.join("-"),
                Country::It => format!("{first}/{}", rest.concat()),
                Country::Nl => format!("{trunk}{first}-{}", rest.concat()),
            },
            6 => match self.country {
                Country::De => {
                    let (a, b) = self.sub.split_at(3.min(self.sub.len()));
                    format!("({trunk}{}) {a}-{b}", self.area)
                }
                Country::Us => g.join("-"),
                Country::Es | Country::It => format!("+{cc}-{}", g.join("-")),
                _ => format!("+{cc} (0){}", g.join(" ")),
            },
            _ => match self.country {
                Country::Us => format!("1-{}", g.join("-")),
                _ => format!("+{cc}-{}", g.join("-")),
            },
        }
    }

    /// A random rendering, occasionally replaced by junk.
    pub fn messy(&self, rng: &mut StdRng, junk_rate: f64) -> String {
        if rng.random_bool(junk_rate) {
            return JUNK[rng.random_range(0..JUNK.len())].to_string();
        }
        self.render(rng.random_range(0..STYLES))
    }
}

/// Reduces a rendered phone to its digits, for tests and sanity checks.
#[cfg(test)]
pub fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn phone(country: Country, area: &str, sub: &str, mobile: bool) -> Phone {
        Phone {
            country,
            area: area.into(),
            sub: sub.into(),
            mobile,
        }
    }

    #[test]
    fn german_landline_formats() {
        let p = phone(Country::De, "30", "1234567", false);
        let all: Vec<String> = (0..STYLES).map(|s| p.render(s)).collect();
        for want in [
            "+49 30 1234567",
            "030/1234567",
            "0049301234567",
            "(030) 123-4567",
            "+49301234567",
        ] {
            assert!(all.iter().any(|r| r == want), "{want} not in {all:?}");
        }
    }

    #[test]
    fn us_and_french_formats() {
        let us = phone(Country::Us, "415", "2345678", true);
        assert_eq!(us.render(5), "(415) 234-5678");
        assert_eq!(us.render(1), "+1 415 234 5678");
        let fr = phone(Country::Fr, "61", "2345678", true);
        assert_eq!(fr.render(3), "06 12 34 56 78");
        assert_eq!(fr.render(1), "+33 6 12 34 56 78");
    }

    #[test]
    fn every_style_keeps_the_digits() {
        let mut rng = StdRng::seed_from_u64(3);
        for c in Country::ALL {
            for city in c.cities() {
                let p = Phone::random(c, city, &mut rng);
                let nsn = p.nsn();
                assert!((9..=11).contains(&nsn.len()), "{c:?} {nsn}");
                for s in 0..STYLES {
                    let d = digits_only(&p.render(s));
                    assert!(d.ends_with(&nsn), "{c:?} style {s}: {d} vs {nsn}");
                }
            }
        }
    }
}
