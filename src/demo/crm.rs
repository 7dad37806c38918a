//! CRM contacts (with duplicates) and support tickets.

use super::geo::street_variant;
use super::person::Person;
use super::records::{csv_body, Batch, TextRow};
use super::text::{self, deaccent, mangle_full, mangle_parts, NameMess};
use super::time::{between, push_date, timestamp, DAY, REF_END};
use rand::rngs::StdRng;
use rand::Rng;

/// Header of `crm_contacts.csv`.
pub const CRM_HEADER: &str =
    "contact_id,first_name,last_name,email,phone,street,city,postcode,country,birth_date,created_at,updated_at";
/// Header of `support_tickets.csv`.
pub const SUPPORT_HEADER: &str = "ticket_id,name,phone,subject,opened_at,status";

/// Names in a duplicate record: whoever created it knew the person less well.
const DUP_NAMES: NameMess = NameMess {
    nickname: 0.4,
    typo: 0.4,
    strip_accents: 0.4,
    lowercase: 0.05,
    uppercase: 0.05,
    last_first: 0.0,
    initial: 0.02,
};

struct CrmRecord<'a> {
    contact_id: &'a str,
    names: (String, String),
    email: &'a str,
    phone_present: f64,
    street_present: f64,
    birth_present: f64,
    created_at: i64,
}

fn crm_row(p: &Person, r: CrmRecord<'_>, rng: &mut StdRng) -> TextRow {
    let phone = if rng.random_bool(r.phone_present) {
        p.phone.messy(rng, 0.02)
    } else {
        String::new()
    };
    let street = if !rng.random_bool(r.street_present) {
        String::new()
    } else if rng.random_bool(0.1) {
        street_variant(&p.address.street, rng)
    } else {
        p.address.street.clone()
    };
    let city = if rng.random_bool(0.08) {
        deaccent(p.address.city.name, p.german())
    } else {
        p.address.city.name.to_string()
    };
    let country = if rng.random_bool(0.07) {
        let s = p.country.spellings();
        s[rng.random_range(0..s.len())]
    } else {
        p.country.code()
    };
    let mut birth = String::new();
    if rng.random_bool(r.birth_present) {
        push_date(&mut birth, p.birth);
    }
    let updated_at = if rng.random_bool(0.6) {
        r.created_at + rng.random_range(0..(REF_END - r.created_at).max(1))
    } else {
        r.created_at
    };
    let created = timestamp(r.created_at);
    let updated = timestamp(updated_at);
    let body = csv_body(&[
        &r.names.0,
        &r.names.1,
        r.email,
        &phone,
        &street,
        &city,
        &p.address.postcode,
        country,
        &birth,
        &created,
        &updated,
    ]);
    TextRow {
        ts: r.created_at,
        owner: p.owner,
        key: Some(r.contact_id.to_string()),
        body,
    }
}

/// The person's CRM record and, for ~3% of people, a sloppy duplicate.
pub fn contacts(p: &Person, rng: &mut StdRng, out: &mut Batch) {
    let Some(crm) = &p.crm else { return };
    let names = mangle_parts(p.first, p.last, p.german(), &text::CRM_NAMES, rng);
    let primary = CrmRecord {
        contact_id: &crm.contact_id,
        names,
        email: &crm.email,
        phone_present: 0.85,
        street_present: 0.95,
        birth_present: 0.75,
        created_at: crm.created_at,
    };
    out.crm.push(crm_row(p, primary, rng));
    if let Some(dup) = &crm.dup {
        let names = mangle_parts(p.first, p.last, p.german(), &DUP_NAMES, rng);
        let record = CrmRecord {
            contact_id: &dup.contact_id,
            names,
            email: &dup.email,
            phone_present: 0.6,
            street_present: 0.8,
            birth_present: 0.4,
            created_at: dup.created_at,
        };
        out.crm.push(crm_row(p, record, rng));
    }
}

const SUBJECTS: &[&str] = &[
    "Where is my order?",
    "Refund request",
    "Wrong size delivered",
    "Cannot log in",
    "Please change my address",
    "Unsubscribe me from all emails",
    "Item arrived damaged, want a replacement",
    "Invoice needed for my order",
    "Loyalty points missing",
    "Password reset not working",
    "Delete my data (GDPR Art. 17)",
    "Question about \"Premium\" membership",
    "Double charged, please refund!",
    "Return label not received",
    "Voucher code doesn't work",
    "Lieferung fehlt / delivery missing",
    "Commande non reçue",
    "Damaged parcel\nphoto attached",
];

/// Support tickets: only a (mangled) name and a phone number identify the caller.
pub fn tickets(p: &Person, orders: &[i64], rng: &mut StdRng, out: &mut Batch) {
    let n = match rng.random_range(0..100) {
        0..=82 => 0,
        83..=93 => 1,
        94..=98 => rng.random_range(2..=3),
        _ => rng.random_range(4..=6),
    };
    for _ in 0..n {
        let opened = if !orders.is_empty() && rng.random_bool(0.6) {
            let o = orders[rng.random_range(0..orders.len())];
            (o + rng.random_range(DAY / 2..20 * DAY)).min(REF_END - 60)
        } else {
            between(rng, p.since, REF_END)
        };
        let name = if rng.random_bool(0.03) {
            p.first.name.to_string()
        } else {
            mangle_full(p.first, p.last, p.german(), &text::SUPPORT_NAMES, rng)
        };
        let phone = if rng.random_bool(0.88) {
            p.phone.messy(rng, 0.05)
        } else {
            String::new()
        };
        let subject = SUBJECTS[rng.random_range(0..SUBJECTS.len())];
        let age = REF_END - opened;
        let status = match age {
            a if a < 2 * DAY => ["open", "pending"][rng.random_range(0..2)],
            a if a < 30 * DAY => ["pending", "solved", "open"][rng.random_range(0..3)],
            _ => ["closed", "solved"][rng.random_range(0..2)],
        };
        let body = csv_body(&[&name, &phone, subject, &timestamp(opened), status]);
        out.support.push(TextRow {
            ts: opened,
            owner: p.owner,
            key: None,
            body,
        });
    }
}
