//! The hidden "true" people behind all records, and their households.

use super::email::{self, EmailRegistry};
use super::geo::{Address, Country, Store};
use super::names::{first_names, last_names, FirstName};
use super::phone::Phone;
use super::time::{DAY, REF_END, WINDOW_START};
use rand::rngs::StdRng;
use rand::Rng;

/// Who a record really belongs to (the ground truth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A known customer, index from 0 (rendered `P0000001`).
    Person(u64),
    /// An anonymous-only web visitor, index from 0 (rendered `V000001`).
    Visitor(u64),
}

impl Owner {
    /// Appends the ground-truth person id.
    pub fn push_id(self, out: &mut String) {
        use std::fmt::Write;
        // Writing into a String cannot fail.
        let _ = match self {
            Owner::Person(i) => write!(out, "P{:07}", i + 1),
            Owner::Visitor(i) => write!(out, "V{:06}", i + 1),
        };
    }
}

/// A web cookie / device belonging to a person.
#[derive(Debug, Clone)]
pub struct Cookie {
    pub id: String,
    pub device: &'static str,
    /// First time this cookie was seen.
    pub from: i64,
}

/// The duplicate CRM record some people end up with.
#[derive(Debug, Clone)]
pub struct DupCrm {
    pub contact_id: String,
    pub created_at: i64,
    /// The address typed into the duplicate record.
    pub email: String,
}

/// The person's (primary) CRM contact.
#[derive(Debug, Clone)]
pub struct Crm {
    pub contact_id: String,
    pub created_at: i64,
    /// Created through a web sign-up (else in store / by an agent).
    pub via_web: bool,
    /// Email as stored in the primary record (may be messy).
    pub email: String,
    pub dup: Option<DupCrm>,
}

/// A real customer.
#[derive(Debug, Clone)]
pub struct Person {
    pub owner: Owner,
    pub country: Country,
    pub first: &'static FirstName,
    pub last: &'static str,
    /// Birth date as days since the epoch.
    pub birth: i64,
    pub email: String,
    pub alt_email: Option<String>,
    /// Address shared with the household partner.
    pub family_email: Option<String>,
    pub phone: Phone,
    pub address: Address,
    /// Whether this person shares an address with the previous person generated.
    pub household: bool,
    /// First interaction with the brand.
    pub since: i64,
    pub crm: Option<Crm>,
    pub cookies: Vec<Cookie>,
    pub loyalty: bool,
    /// Index into the store list of the usual store.
    pub home_store: usize,
    /// How engaged the person is with newsletters, 0..1.
    pub engagement: f64,
}

impl Person {
    /// Whether umlauts should be transliterated German-style when stripped.
    pub fn german(&self) -> bool {
        self.country == Country::De
    }
}

/// Deterministic, collision-free identifiers drawn from a scrambled sequence.
pub struct IdScrambler {
    modulus: u128,
    mul: u128,
    add: u128,
    width: usize,
}

impl IdScrambler {
    /// An affine bijection on `0..10^w` with `10^w >= max(needed, 10^6)`.
    pub fn new(needed: u64, rng: &mut StdRng) -> Self {
        let mut modulus: u128 = 1_000_000;
        let mut width = 6;
        while modulus < u128::from(needed) {
            modulus *= 10;
            width += 1;
        }
        // Coprime to a power of ten: odd and not divisible by five.
        let mut mul = rng.random_range(1..modulus) | 1;
        if mul % 5 == 0 {
            mul = (mul + 2) % modulus;
        }
        let add = rng.random_range(0..modulus);
        IdScrambler {
            modulus,
            mul,
            add,
            width,
        }
    }

    /// The `i`-th identifier with `prefix`, e.g. `C482913`.
    pub fn id(&self, prefix: &str, i: u64) -> String {
        let v = (u128::from(i) % self.modulus * self.mul + self.add) % self.modulus;
        format!("{prefix}{v:0w$}", w = self.width)
    }
}

/// A uuid-looking random hex id.
pub fn uuidish(rng: &mut StdRng) -> String {
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

const DEVICES: &[&str] = &["desktop", "mobile", "tablet", "app_ios", "app_android"];

/// A random device, mobile-heavy.
pub fn device(rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..100) {
        0..=34 => DEVICES[0],
        35..=74 => DEVICES[1],
        75..=82 => DEVICES[2],
        83..=92 => DEVICES[3],
        _ => DEVICES[4],
    }
}

/// Builds people one at a time; the previous person may become a household partner.
pub struct PersonFactory<'a> {
    pub emails: EmailRegistry,
    pub contacts: &'a IdScrambler,
    pub stores: &'a [Store],
}

impl PersonFactory<'_> {
    /// Creates person number `index`; `prev` is the previous person in the same batch.
    pub fn make(&mut self, index: u64, prev: Option<&Person>, rng: &mut StdRng) -> Person {
        // ~15% of people live with another person (pairs, p/(1+p) ≈ 7.5% start a pair).
        let partner = prev.filter(|p| !p.household && rng.random_bool(0.085));
        let country = partner.map_or_else(|| Country::pick(rng), |p| p.country);
        let firsts = first_names(country);
        let mut first = &firsts[rng.random_range(0..firsts.len())];
        if let Some(p) = partner {
            // Mostly mixed couples; a few tries keep the draw cheap and total.
            for _ in 0..4 {
                if first.female != p.first.female || rng.random_bool(0.1) {
                    break;
                }
                first = &firsts[rng.random_range(0..firsts.len())];
            }
        }
        let lasts = last_names(country);
        let last = match partner {
            Some(p) if rng.random_bool(0.7) => p.last,
            _ => lasts[rng.random_range(0..lasts.len())],
        };
        // 18–85 years old at the reference date, most between 25 and 55.
        let age_days = {
            let years = if rng.random_bool(0.7) {
                rng.random_range(25.0..55.0)
            } else {
                rng.random_range(18.0..85.0)
            };
            (years * 365.25) as i64
        };
        let birth = REF_END / DAY - age_days;
        let birth_year = super::time::civil_from_days(birth).0;
        let email = self
            .emails
            .personal(first.name, last, birth_year, country, rng);
        let alt_email = rng
            .random_bool(0.15)
            .then(|| self.emails.secondary(first.name, last, rng));
        let address = match partner {
            Some(p) => p.address.clone(),
            None => Address::random(country, rng),
        };
        let phone = match partner {
            Some(p) if !p.phone.mobile && rng.random_bool(0.5) => p.phone.clone(),
            _ => Phone::random(country, address.city, rng),
        };
        let since = rng.random_range(WINDOW_START..REF_END - 14 * DAY);
        let crm = rng.random_bool(0.9).then(|| {
            let created_at = (since + rng.random_range(0..30 * DAY)).min(REF_END - DAY);
            let stored = email::messy(&email, &email::CRM_EMAIL, rng);
            let dup = rng.random_bool(1.0 / 30.0).then(|| {
                let dup_created =
                    (created_at + rng.random_range(DAY..400 * DAY)).min(REF_END - DAY);
                let base = match &alt_email {
                    Some(a) if rng.random_bool(0.3) => a.clone(),
                    _ => email.clone(),
                };
                let harsh = email::EmailMess {
                    case: 0.5,
                    space: 0.1,
                    plus_tag: 0.3,
                    gmail: 0.8,
                    typo: 0.05,
                    empty: 0.05,
                };
                let mut dup_email = email::messy(&base, &harsh, rng);
                if dup_email == stored {
                    dup_email = super::text::title_case(&dup_email);
                }
                DupCrm {
                    contact_id: self.contacts.id("C", index * 2 + 1),
                    created_at: dup_created,
                    email: dup_email,
                }
            });
            Crm {
                contact_id: self.contacts.id("C", index * 2),
                created_at,
                via_web: rng.random_bool(0.4),
                email: stored,
                dup,
            }
        });
        let n_cookies = match rng.random_range(0..100) {
            0..=44 => 1,
            45..=74 => 2,
            75..=91 => 3,
            _ => 4,
        };
        let mut cookies: Vec<Cookie> = (0..n_cookies)
            .map(|i| Cookie {
                id: uuidish(rng),
                device: device(rng),
                from: if i == 0 {
                    since - rng.random_range(0..7 * DAY)
                } else {
                    super::time::between(rng, since, REF_END)
                },
            })
            .collect();
        cookies.sort_by_key(|c| c.from);
        let local: Vec<usize> = (0..self.stores.len())
            .filter(|&i| self.stores[i].city == address.city.name)
            .collect();
        let home_store = if local.is_empty() {
            0
        } else {
            local[rng.random_range(0..local.len())]
        };
        Person {
            owner: Owner::Person(index),
            country,
            first,
            last,
            birth,
            email,
            alt_email,
            family_email: None,
            phone,
            address,
            household: partner.is_some(),
            since,
            crm,
            cookies,
            loyalty: rng.random_bool(0.65),
            home_store,
            engagement: rng.random_range(0.02..0.22f64),
        }
    }

    /// Gives a fresh household pair a shared family address now and then
    /// (about 2% of all people); each spouse may also have it in the CRM.
    pub fn link_household(&mut self, prev: &mut Person, cur: &mut Person, rng: &mut StdRng) {
        if !cur.household || !rng.random_bool(0.135) {
            return;
        }
        let family = self.emails.family(cur.last, cur.country, rng);
        for p in [prev, cur] {
            if let Some(crm) = p.crm.as_mut() {
                if rng.random_bool(0.5) {
                    crm.email = email::messy(&family, &email::CRM_EMAIL, rng);
                }
            }
            p.family_email = Some(family.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn scrambled_ids_are_unique() {
        let mut rng = StdRng::seed_from_u64(1);
        let s = IdScrambler::new(50_000, &mut rng);
        let ids: HashSet<String> = (0..50_000).map(|i| s.id("C", i)).collect();
        assert_eq!(ids.len(), 50_000);
        assert!(ids.iter().all(|i| i.len() == 7));
        let big = IdScrambler::new(5_000_000, &mut rng);
        assert_eq!(big.id("C", 3).len(), 8);
    }

    #[test]
    fn uuidish_shape() {
        let mut rng = StdRng::seed_from_u64(2);
        let u = uuidish(&mut rng);
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }
}
