//! Email addresses: realistic canonical addresses and the ways sources mangle them.

use super::geo::Country;
use super::text::slug;
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::HashSet;

#[rustfmt::skip]
fn domains(c: Country) -> &'static [(&'static str, u32)] {
    match c {
        Country::De => &[("gmail.com", 30), ("web.de", 20), ("gmx.de", 15), ("gmx.net", 6), ("t-online.de", 10), ("outlook.de", 5), ("yahoo.de", 4), ("icloud.com", 6), ("posteo.de", 4)],
        Country::Fr => &[("gmail.com", 35), ("orange.fr", 18), ("free.fr", 12), ("laposte.net", 8), ("hotmail.fr", 12), ("yahoo.fr", 8), ("sfr.fr", 7)],
        Country::Gb => &[("gmail.com", 35), ("hotmail.co.uk", 18), ("yahoo.co.uk", 12), ("btinternet.com", 10), ("outlook.com", 15), ("icloud.com", 10)],
        Country::Us => &[("gmail.com", 45), ("yahoo.com", 15), ("outlook.com", 10), ("hotmail.com", 10), ("icloud.com", 10), ("aol.com", 5), ("comcast.net", 5)],
        Country::Es => &[("gmail.com", 45), ("hotmail.es", 25), ("yahoo.es", 15), ("telefonica.net", 15)],
        Country::It => &[("gmail.com", 40), ("libero.it", 20), ("virgilio.it", 10), ("hotmail.it", 15), ("tiscali.it", 15)],
        Country::Nl => &[("gmail.com", 40), ("ziggo.nl", 20), ("kpnmail.nl", 15), ("hotmail.nl", 15), ("outlook.com", 10)],
    }
}

fn pick_domain(c: Country, rng: &mut StdRng) -> &'static str {
    let list = domains(c);
    let total: u32 = list.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total.max(1));
    for (d, w) in list {
        if x < *w {
            return d;
        }
        x -= w;
    }
    "gmail.com"
}

/// The identity an email provider would deliver to: lowercase, no `+tag`,
/// no gmail dots, `googlemail.com` folded into `gmail.com`.
pub fn normalize(email: &str) -> String {
    let e = email.trim().to_lowercase();
    let Some((local, domain)) = e.rsplit_once('@') else {
        return e;
    };
    let local = local.split('+').next().unwrap_or(local);
    let domain = if domain == "googlemail.com" {
        "gmail.com"
    } else {
        domain
    };
    if domain == "gmail.com" {
        format!("{}@{domain}", local.replace('.', ""))
    } else {
        format!("{local}@{domain}")
    }
}

/// Hands out canonical addresses whose normalized forms never collide, so
/// that two different people can only share an address on purpose.
#[derive(Default)]
pub struct EmailRegistry {
    taken: HashSet<String>,
}

impl EmailRegistry {
    fn claim(&mut self, local: &str, domain: &str, rng: &mut StdRng) -> String {
        let mut candidate = format!("{local}@{domain}");
        let mut n = 0u32;
        while !self.taken.insert(normalize(&candidate)) {
            n += 1;
            let suffix = if n < 5 {
                rng.random_range(1..100u32)
            } else {
                rng.random_range(100..100_000u32)
            };
            candidate = format!("{local}{suffix}@{domain}");
        }
        candidate
    }

    /// A personal address built from the person's name.
    pub fn personal(
        &mut self,
        first: &str,
        last: &str,
        birth_year: i64,
        c: Country,
        rng: &mut StdRng,
    ) -> String {
        let f = slug(first);
        let l = slug(last);
        let f = if f.is_empty() { "user".to_string() } else { f };
        let fi = &f[..1];
        let yy = birth_year.rem_euclid(100);
        let local = match rng.random_range(0..10) {
            0..=2 => format!("{f}.{l}"),
            3 => format!("{f}{l}"),
            4 => format!("{f}_{l}{yy:02}"),
            5 => format!("{fi}{l}"),
            6 => format!("{l}.{f}"),
            7 => format!("{f}.{l}{birth_year}"),
            8 => format!("{f}{}", rng.random_range(1..1000)),
            _ => format!("{fi}.{l}"),
        };
        self.claim(&local, pick_domain(c, rng), rng)
    }

    /// A second (work or old) address.
    pub fn secondary(&mut self, first: &str, last: &str, rng: &mut StdRng) -> String {
        let local = format!("{}.{}", slug(first), slug(last));
        let domain = WORK_DOMAINS[rng.random_range(0..WORK_DOMAINS.len())];
        self.claim(&local, domain, rng)
    }

    /// A household address used by two spouses, e.g. `mueller.family@web.de`.
    pub fn family(&mut self, last: &str, c: Country, rng: &mut StdRng) -> String {
        let l = slug(last);
        let (local, domain) = match c {
            Country::De => (format!("familie.{l}"), "web.de"),
            Country::Fr => (format!("famille.{l}"), "orange.fr"),
            Country::Nl => (format!("fam.{l}"), "ziggo.nl"),
            Country::Es => (format!("familia.{l}"), "gmail.com"),
            Country::It => (format!("famiglia.{l}"), "libero.it"),
            Country::Gb | Country::Us => (format!("the{l}s"), "gmail.com"),
        };
        let local = if rng.random_bool(0.4) {
            format!("{l}.family")
        } else {
            local
        };
        self.claim(&local, domain, rng)
    }
}

/// How a source mangles email addresses (probabilities per record).
#[derive(Debug, Clone, Copy)]
pub struct EmailMess {
    pub case: f64,
    pub space: f64,
    pub plus_tag: f64,
    pub gmail: f64,
    pub typo: f64,
    pub empty: f64,
}

/// CRM: agents and import jobs, mostly clean.
pub const CRM_EMAIL: EmailMess = EmailMess {
    case: 0.08,
    space: 0.03,
    plus_tag: 0.01,
    gmail: 0.02,
    typo: 0.01,
    empty: 0.02,
};
/// Checkout: typed by customers on phones.
pub const SHOP_EMAIL: EmailMess = EmailMess {
    case: 0.15,
    space: 0.05,
    plus_tag: 0.08,
    gmail: 0.08,
    typo: 0.02,
    empty: 0.01,
};
/// Login forms: browsers autofill, people fat-finger.
pub const WEB_EMAIL: EmailMess = EmailMess {
    case: 0.12,
    space: 0.04,
    plus_tag: 0.03,
    gmail: 0.04,
    typo: 0.01,
    empty: 0.0,
};
/// Consent captured by assorted forms.
pub const CONSENT_EMAIL: EmailMess = EmailMess {
    case: 0.1,
    space: 0.04,
    plus_tag: 0.04,
    gmail: 0.04,
    typo: 0.01,
    empty: 0.03,
};
/// The email service provider lowercases and trims, mostly.
pub const ESP_EMAIL: EmailMess = EmailMess {
    case: 0.03,
    space: 0.0,
    plus_tag: 0.0,
    gmail: 0.0,
    typo: 0.0,
    empty: 0.0,
};

fn domain_typo(domain: &str, rng: &mut StdRng) -> String {
    #[rustfmt::skip]
    const KNOWN: &[(&str, &[&str])] = &[
        ("gmail.com", &["gmial.com", "gmail.con", "gmai.com", "gnail.com", "gmail.co"]),
        ("yahoo.com", &["yaho.com", "yahooo.com"]),
        ("hotmail.com", &["hotmial.com", "hotmail.co"]),
        ("web.de", &["wbe.de", "web.d"]),
        ("gmx.de", &["gmx.ed", "gmc.de"]),
        ("outlook.com", &["outlok.com", "outlook.cm"]),
        ("icloud.com", &["iclod.com", "icloud.co"]),
    ];
    for (d, typos) in KNOWN {
        if *d == domain {
            return typos[rng.random_range(0..typos.len())].to_string();
        }
    }
    super::text::typo(domain, rng)
}

/// Work domains handed out by [`EmailRegistry::secondary`].
#[rustfmt::skip]
const WORK_DOMAINS: &[&str] = &["acme-corp.com", "example-gmbh.de", "contoso.co.uk", "initech.com", "globex.fr", "hooli.io", "umbrella.nl"];

/// Whether `email` (as rendered) has a domain no address was ever issued on,
/// i.e. a misspelt one: mail to it bounces.
pub fn has_domain_typo(email: &str) -> bool {
    let e = email.trim().to_lowercase();
    let Some((_, dom)) = e.rsplit_once('@') else {
        return false;
    };
    let known = dom == "googlemail.com"
        || WORK_DOMAINS.contains(&dom)
        || Country::ALL
            .iter()
            .any(|&c| domains(c).iter().any(|(d, _)| *d == dom));
    !known
}

/// Renders `email` the way a source with habits `m` would store it.
pub fn messy(email: &str, m: &EmailMess, rng: &mut StdRng) -> String {
    if rng.random_bool(m.empty) {
        return String::new();
    }
    let Some((local, domain)) = email.split_once('@') else {
        return email.to_string();
    };
    let mut local = local.to_string();
    let mut domain = domain.to_string();
    if domain == "gmail.com" && rng.random_bool(m.gmail) {
        match rng.random_range(0..3) {
            0 => domain = "googlemail.com".to_string(),
            1 => local = local.replace('.', ""),
            _ => {
                // a.n.n.a.mueller: dots sprinkled between letters.
                let mut s = String::with_capacity(local.len() * 2);
                for (i, ch) in local.chars().enumerate() {
                    if i > 0 && ch != '.' && !s.ends_with('.') && rng.random_bool(0.4) {
                        s.push('.');
                    }
                    s.push(ch);
                }
                local = s;
            }
        }
    }
    if rng.random_bool(m.plus_tag) {
        const TAGS: &[&str] = &["shop", "news", "promo", "orders", "2024", "deals", "spam"];
        local = format!("{local}+{}", TAGS[rng.random_range(0..TAGS.len())]);
    }
    if rng.random_bool(m.typo) {
        domain = domain_typo(&domain, rng);
    }
    let mut out = format!("{local}@{domain}");
    if rng.random_bool(m.case) {
        out = match rng.random_range(0..4) {
            0 => out.to_uppercase(),
            1 => format!("{}@{}", super::text::title_case(&local), domain),
            2 => format!("{local}@{}", domain.to_uppercase()),
            _ => out
                .chars()
                .map(|c| {
                    if rng.random_bool(0.3) {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect(),
        };
    }
    if rng.random_bool(m.space) {
        out = match rng.random_range(0..3) {
            0 => format!(" {out}"),
            1 => format!("{out} "),
            _ => format!("  {out}\t"),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn normalization_folds_gmail_variants() {
        assert_eq!(
            normalize(" A.N.N.A.Mueller+shop@GoogleMail.com "),
            "annamueller@gmail.com"
        );
        assert_eq!(normalize("anna.mueller+x@web.de"), "anna.mueller@web.de");
    }

    #[test]
    fn registry_never_hands_out_colliding_addresses() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut reg = EmailRegistry::default();
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            let e = reg.personal("Anna", "Müller", 1990, Country::De, &mut rng);
            assert!(seen.insert(normalize(&e)), "{e}");
        }
    }

    #[test]
    fn messy_variants_normalize_back_unless_typo_or_empty() {
        let mut rng = StdRng::seed_from_u64(6);
        let m = EmailMess {
            case: 0.5,
            space: 0.5,
            plus_tag: 0.5,
            gmail: 1.0,
            typo: 0.0,
            empty: 0.0,
        };
        for _ in 0..500 {
            let v = messy("anna.mueller@gmail.com", &m, &mut rng);
            assert_eq!(normalize(&v), "annamueller@gmail.com", "{v:?}");
        }
        let t = EmailMess { typo: 1.0, ..m };
        for _ in 0..100 {
            let v = messy("anna@gmail.com", &t, &mut rng);
            assert!(has_domain_typo(&v), "{v}");
        }
        assert!(!has_domain_typo(" Anna@GoogleMail.com"));
        assert!(!has_domain_typo("x@example-gmbh.de"));
    }
}
