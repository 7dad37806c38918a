//! Newsletter campaigns, email engagement events and consent changes.
//!
//! Both are driven by one consent timeline per person: sends only happen while
//! the person is subscribed, and an `unsubscribe` click produces a matching
//! `email_marketing = false` consent change.

use super::email::{self, EmailMess};
use super::person::Person;
use super::records::{csv_body, Batch, TextRow};
use super::time::{
    between, civil_from_days, days_from_civil, timestamp, DAY, HOUR, REF_END, WINDOW_START,
};
use rand::rngs::StdRng;
use rand::Rng;

/// Header of `email_engagement.csv`.
pub const EMAIL_HEADER: &str = "send_id,email,campaign,event,occurred_at";
/// Header of `consent_changes.csv`.
pub const CONSENT_HEADER: &str = "change_id,email,contact_id,purpose,granted,changed_at,source";

/// A newsletter or promotion sent to (part of) the list.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub sent_at: i64,
}

fn theme(month: u32) -> &'static str {
    match month {
        1 => "winter_sale",
        2 => "valentines",
        3 | 4 => "spring_collection",
        5 => "mothers_day",
        6 | 7 => "summer_sale",
        8 => "end_of_summer",
        9 => "back_to_school",
        10 => "autumn_new_in",
        11 => "black_friday",
        _ => "xmas_gifts",
    }
}

/// About 1.7 campaigns a week over the whole window, sorted by send time.
pub fn campaigns(rng: &mut StdRng) -> Vec<Campaign> {
    let mut out = Vec::new();
    let mut week_start = WINDOW_START;
    while week_start < REF_END - 7 * DAY {
        let day = week_start / DAY;
        let (y, m, _) = civil_from_days(day);
        let week = (day - days_from_civil(y, 1, 1)) / 7 + 1;
        out.push(Campaign {
            name: format!("newsletter_{y}_w{week:02}"),
            sent_at: week_start + DAY + 7 * HOUR + rng.random_range(0..2 * HOUR),
        });
        if rng.random_bool(0.7) {
            let variant = if rng.random_bool(0.2) { "_v2" } else { "" };
            out.push(Campaign {
                name: format!("promo_{y}-{m:02}_{}{variant}", theme(m)),
                sent_at: week_start + 3 * DAY + 16 * HOUR + rng.random_range(0..3 * HOUR),
            });
        }
        week_start += 7 * DAY;
    }
    out.sort_by_key(|c| c.sent_at);
    out
}

/// Unique, unguessable-looking 12-hex-digit send ids (a bijection on 48 bits).
pub struct SendIds {
    key: u64,
    next: u64,
}

impl SendIds {
    pub fn new(key: u64) -> Self {
        SendIds { key, next: 0 }
    }

    fn take(&mut self) -> String {
        const MASK: u64 = (1 << 48) - 1;
        let mut x = (self.next ^ self.key) & MASK;
        self.next += 1;
        // xorshift-multiply rounds; each step is invertible modulo 2^48.
        x ^= x >> 24;
        x = x.wrapping_mul(0x9E37_79B9_7F4B) & MASK;
        x ^= x >> 23;
        x = x.wrapping_mul(0xC2B2_AE3D_27D5) & MASK;
        x ^= x >> 24;
        format!("{x:012x}")
    }
}

#[allow(clippy::too_many_arguments)]
fn consent(
    p: &Person,
    ts: i64,
    purpose: &str,
    granted: bool,
    source: &str,
    email: &str,
    contact: Option<&str>,
    out: &mut Batch,
) {
    let ts = ts.min(REF_END - 1);
    let granted = if granted { "true" } else { "false" };
    let body = csv_body(&[
        email,
        contact.unwrap_or(""),
        purpose,
        granted,
        &timestamp(ts),
        source,
    ]);
    out.consent.push(TextRow {
        ts,
        owner: p.owner,
        key: None,
        body,
    });
}

/// Email and contact id as a web form captures them: at least one is present.
fn web_identity(p: &Person, rng: &mut StdRng) -> (String, Option<String>) {
    let contact = p
        .crm
        .as_ref()
        .filter(|_| rng.random_bool(0.7))
        .map(|c| c.contact_id.clone());
    let mess = if contact.is_some() {
        email::CONSENT_EMAIL
    } else {
        EmailMess {
            empty: 0.0,
            ..email::CONSENT_EMAIL
        }
    };
    (email::messy(&p.email, &mess, rng), contact)
}

/// Consent changes plus newsletter engagement for one person.
pub fn engagement(
    p: &Person,
    campaigns: &[Campaign],
    ids: &mut SendIds,
    rng: &mut StdRng,
    out: &mut Batch,
) {
    let crm = p.crm.as_ref();
    // Opt-in: when the CRM contact was created, or via a checkbox at checkout.
    let subscription = match crm {
        Some(c) if rng.random_bool(0.75) => Some((
            c.created_at + rng.random_range(5..120),
            if c.via_web { "web" } else { "crm" },
        )),
        None if rng.random_bool(0.3) => Some((between(rng, p.since, REF_END), "shop")),
        _ => None,
    };
    let mut esp_address = p.email.clone();
    if let Some((start, source)) = subscription {
        let (mail, contact) = match (source, crm) {
            ("crm", Some(c)) => (c.email.clone(), Some(c.contact_id.clone())),
            ("shop", _) => (
                email::messy(
                    &p.email,
                    &EmailMess {
                        empty: 0.0,
                        ..email::SHOP_EMAIL
                    },
                    rng,
                ),
                None,
            ),
            _ => web_identity(p, rng),
        };
        if !mail.trim().is_empty() {
            esp_address = mail.trim().to_lowercase();
        }
        consent(
            p,
            start,
            "email_marketing",
            true,
            source,
            &mail,
            contact.as_deref(),
            out,
        );
    } else if let Some(c) = crm.filter(|_| rng.random_bool(0.4)) {
        consent(
            p,
            c.created_at + 30,
            "email_marketing",
            false,
            "crm",
            &c.email,
            Some(&c.contact_id),
            out,
        );
    }
    if let Some(c) = crm.filter(|_| rng.random_bool(0.25)) {
        let ts = c.created_at + rng.random_range(30..600);
        consent(
            p,
            ts,
            "sms_marketing",
            rng.random_bool(0.6),
            "crm",
            &c.email,
            Some(&c.contact_id),
            out,
        );
        if rng.random_bool(0.2) {
            let later = between(rng, ts, REF_END);
            consent(
                p,
                later,
                "sms_marketing",
                rng.random_bool(0.3),
                "crm",
                &c.email,
                Some(&c.contact_id),
                out,
            );
        }
    }
    // Cookie banner choices, sometimes revisited later.
    if rng.random_bool(0.4) {
        let t = between(rng, p.since, REF_END);
        let (mail, contact) = web_identity(p, rng);
        consent(
            p,
            t,
            "analytics",
            rng.random_bool(0.7),
            "web",
            &mail,
            contact.as_deref(),
            out,
        );
        consent(
            p,
            t + 1,
            "personalization",
            rng.random_bool(0.5),
            "web",
            &mail,
            contact.as_deref(),
            out,
        );
        if rng.random_bool(0.4) {
            let later = between(rng, t, REF_END);
            let purpose = if rng.random_bool(0.5) {
                "analytics"
            } else {
                "personalization"
            };
            let (mail, contact) = web_identity(p, rng);
            consent(
                p,
                later,
                purpose,
                rng.random_bool(0.5),
                "web",
                &mail,
                contact.as_deref(),
                out,
            );
        }
    }
    let Some((start, _)) = subscription else {
        return;
    };
    let esp_address = email::messy(&esp_address, &email::ESP_EMAIL, rng);
    let hard_bounce = email::has_domain_typo(&esp_address);
    let first = campaigns.partition_point(|c| c.sent_at < start);
    let open_rate = 0.15 + 1.5 * p.engagement;
    let mut bounces = 0;
    let row = |id: &str, event: &str, campaign: &str, ts: i64, out: &mut Batch| {
        let body = csv_body(&[&esp_address, campaign, event, &timestamp(ts)]);
        out.email.push(TextRow {
            ts,
            owner: p.owner,
            key: Some(format!("{id}-{event}")),
            body,
        });
    };
    for c in &campaigns[first..] {
        if !rng.random_bool(p.engagement) {
            continue;
        }
        let sent = c.sent_at + rng.random_range(0..2 * HOUR);
        if sent >= REF_END {
            break;
        }
        let id = ids.take();
        row(&id, "sent", &c.name, sent, out);
        if hard_bounce || rng.random_bool(0.005) {
            row(
                &id,
                "bounce",
                &c.name,
                (sent + rng.random_range(1..120)).min(REF_END - 1),
                out,
            );
            bounces += 1;
            if bounces >= 2 && hard_bounce {
                break;
            }
            continue;
        }
        if !rng.random_bool(open_rate) {
            continue;
        }
        let opened = sent
            + rng
                .random_range(60..3 * DAY)
                .min(rng.random_range(60..3 * DAY));
        if opened >= REF_END {
            continue;
        }
        row(&id, "open", &c.name, opened, out);
        if rng.random_bool(0.2) {
            let clicked = opened + rng.random_range(5..600);
            if clicked < REF_END {
                row(&id, "click", &c.name, clicked, out);
            }
        }
        if rng.random_bool(0.02) {
            let unsub = opened + rng.random_range(10..900);
            if unsub < REF_END - 10 {
                row(&id, "unsubscribe", &c.name, unsub, out);
                consent(
                    p,
                    unsub + 2,
                    "email_marketing",
                    false,
                    "web",
                    &esp_address,
                    None,
                    out,
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn send_ids_are_unique() {
        let mut ids = SendIds::new(0xDEAD_BEEF);
        let set: HashSet<String> = (0..100_000).map(|_| ids.take()).collect();
        assert_eq!(set.len(), 100_000);
        assert!(set.iter().all(|s| s.len() == 12));
    }

    #[test]
    fn campaigns_cover_the_window() {
        let mut rng = StdRng::seed_from_u64(1);
        let cs = campaigns(&mut rng);
        assert!(cs.len() > 200);
        assert!(cs.windows(2).all(|w| w[0].sent_at <= w[1].sent_at));
        assert!(cs
            .iter()
            .all(|c| c.sent_at >= WINDOW_START && c.sent_at < REF_END));
        assert!(cs.iter().any(|c| c.name.contains("black_friday")));
    }
}
