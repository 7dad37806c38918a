//! One mid-sized generated data set checked from many angles: ground-truth
//! completeness, volumes, cross-source links, households and messiness.

use super::email::{has_domain_typo, normalize};
use super::tests::{col, csv, ndjson, parquet, parse_ts, run, source, strings};
use super::text::deaccent;
use super::time::{DAY, REF_END, WINDOW_START};
use super::*;
use arrow::array::AsArray;
use std::collections::{HashMap, HashSet};

/// One mid-sized data set checked from many angles (generation in debug builds is the slow part).
#[test]
fn dataset_is_complete_consistent_and_messy() {
    let n = 2000;
    let (_d, s) = run("full", n, 7);
    let file = |name: &str| source(&s, name).file.clone();

    // --- every record, keyed by (source, key) ---
    let mut records: Vec<(String, String)> = Vec::new();
    let mut add = |src: &str, keys: Vec<String>| {
        records.extend(keys.into_iter().map(|k| (src.to_string(), k)))
    };
    let (crm_h, crm) = csv(&file("crm_contacts"));
    assert_eq!(crm_h.join(","), crm::CRM_HEADER);
    add("crm_contacts", crm.iter().map(|r| r[0].clone()).collect());
    let shop = parquet(&file("shop_orders"));
    add(
        "shop_orders",
        strings(&shop, "order_id").into_iter().flatten().collect(),
    );
    let pos = parquet(&file("pos_orders"));
    add(
        "pos_orders",
        strings(&pos, "receipt_id").into_iter().flatten().collect(),
    );
    let web = ndjson(&file("web_events"));
    add(
        "web_events",
        web.iter()
            .map(|e| e["event_id"].as_str().unwrap_or_default().to_string())
            .collect(),
    );
    let (mail_h, mail) = csv(&file("email_engagement"));
    add(
        "email_engagement",
        mail.iter().map(|r| r[0].clone()).collect(),
    );
    let (sup_h, support) = csv(&file("support_tickets"));
    add(
        "support_tickets",
        support.iter().map(|r| r[0].clone()).collect(),
    );
    let (con_h, consent) = csv(&file("consent_changes"));
    add(
        "consent_changes",
        consent.iter().map(|r| r[0].clone()).collect(),
    );
    for g in &s.sources {
        assert_eq!(
            records.iter().filter(|(src, _)| src == g.name).count(),
            g.rows,
            "{}",
            g.name
        );
    }

    // --- ground truth: exactly once per record ---
    let (gt_h, gt) = csv(&s.ground_truth);
    assert_eq!(gt_h, ["source", "record_key", "person_id"]);
    assert_eq!(gt.len(), records.len());
    let mut truth: HashMap<(String, String), String> = HashMap::new();
    for r in &gt {
        let prev = truth.insert((r[0].clone(), r[1].clone()), r[2].clone());
        assert!(prev.is_none(), "duplicate ground truth row {r:?}");
    }
    for rec in &records {
        assert!(
            !rec.1.is_empty() && truth.contains_key(rec),
            "no ground truth for {rec:?}"
        );
    }
    let owner = |src: &str, key: &str| truth[&(src.to_string(), key.to_string())].clone();
    let persons: HashSet<&str> = gt.iter().map(|r| r[2].as_str()).collect();
    let visitors = persons.iter().filter(|p| p.starts_with('V')).count();
    assert_eq!(visitors, n * 3 / 10);
    assert_eq!(s.people, n + n * 3 / 10);
    assert!(persons.len() <= s.people && persons.len() > s.people * 9 / 10);

    // --- volumes per customer are in the intended ballpark ---
    let per = |name: &str| source(&s, name).rows as f64 / n as f64;
    let expect = [
        ("crm_contacts", 0.85, 1.05),
        ("shop_orders", 2.2, 4.0),
        ("pos_orders", 0.7, 1.4),
        ("web_events", 22.0, 42.0),
        ("email_engagement", 9.0, 22.0),
        ("support_tickets", 0.15, 0.5),
        ("consent_changes", 1.4, 2.8),
    ];
    for (name, lo, hi) in expect {
        assert!(
            (lo..hi).contains(&per(name)),
            "{name}: {} per customer",
            per(name)
        );
    }

    // --- identifiers that link sources point at the right person ---
    let contact_owner: HashMap<&str, String> = crm
        .iter()
        .map(|r| (r[0].as_str(), owner("crm_contacts", &r[0])))
        .collect();
    let receipts = strings(&pos, "receipt_id");
    for (rid, loyalty) in receipts.iter().zip(strings(&pos, "loyalty_id")) {
        if let (Some(rid), Some(l)) = (rid, loyalty) {
            assert_eq!(contact_owner[l.as_str()], owner("pos_orders", rid));
        }
    }
    let mut logged_in = 0;
    for e in &web {
        if let Some(uid) = e["user_id"].as_str() {
            logged_in += 1;
            assert_eq!(
                contact_owner[uid],
                owner("web_events", e["event_id"].as_str().unwrap_or_default())
            );
        }
        let kind = e["event_type"].as_str().unwrap_or_default();
        assert_eq!(
            e["email"].is_string(),
            kind == "login" || kind == "signup",
            "{e}"
        );
        let ts = parse_ts(e["occurred_at"].as_str().unwrap_or_default());
        assert!((WINDOW_START - 8 * DAY..REF_END).contains(&ts));
    }
    assert!(logged_in > 0);
    let cid = col(&con_h, "contact_id");
    for r in consent.iter().filter(|r| !r[cid].is_empty()) {
        assert_eq!(
            contact_owner[r[cid].as_str()],
            owner("consent_changes", &r[0])
        );
    }

    // --- duplicates and households ---
    let mut crm_per_person: HashMap<String, usize> = HashMap::new();
    for r in &crm {
        *crm_per_person
            .entry(owner("crm_contacts", &r[0]))
            .or_default() += 1;
    }
    let dups = crm_per_person.values().filter(|&&c| c == 2).count() as f64 / n as f64;
    assert!((0.01..0.06).contains(&dups), "duplicate CRM share {dups}");
    let (street, postcode) = (col(&crm_h, "street"), col(&crm_h, "postcode"));
    let mut at_address: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for r in crm.iter().filter(|r| !r[street].is_empty()) {
        at_address
            .entry((r[street].clone(), r[postcode].clone()))
            .or_default()
            .insert(owner("crm_contacts", &r[0]));
    }
    let cohabiting: usize = at_address
        .values()
        .filter(|p| p.len() > 1)
        .map(HashSet::len)
        .sum();
    let share = cohabiting as f64 / n as f64;
    assert!((0.07..0.25).contains(&share), "household share {share}");
    let shop_emails = strings(&shop, "customer_email");
    let mut by_email: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, e) in strings(&shop, "order_id").iter().zip(&shop_emails) {
        if let (Some(id), Some(e)) = (id, e) {
            if !e.trim().is_empty() {
                by_email
                    .entry(normalize(e))
                    .or_default()
                    .insert(owner("shop_orders", id));
            }
        }
    }
    let shared = by_email.values().filter(|p| p.len() > 1).count();
    assert!(
        shared > 0 && shared < n / 20,
        "family emails shared: {shared}"
    );

    // --- messy emails ---
    let emails: Vec<&str> = shop_emails.iter().flatten().map(String::as_str).collect();
    let count = |pred: &dyn Fn(&str) -> bool| emails.iter().filter(|e| pred(e)).count();
    assert!(count(&|e| e.chars().any(|c| c.is_ascii_uppercase())) > 20);
    assert!(count(&|e| e.contains('+')) > 20);
    assert!(count(&|e| e != e.trim()) > 10);
    assert!(count(&|e| e.to_lowercase().contains("googlemail.com")) > 0);
    assert!(count(&|e| e.is_empty()) > 0);
    assert!(count(&|e| has_domain_typo(e)) > 0);
    let gmail_dotted = count(&|e| {
        let n = normalize(e);
        n.ends_with("@gmail.com")
            && e.trim()
                .to_lowercase()
                .split('@')
                .next()
                .is_some_and(|l| l.matches('.').count() >= 2)
    });
    assert!(gmail_dotted > 0);

    // --- messy phones: same digits, many shapes, some junk ---
    let (phone_c, name_c) = (col(&sup_h, "phone"), col(&sup_h, "name"));
    let phones: Vec<&str> = crm
        .iter()
        .map(|r| r[col(&crm_h, "phone")].as_str())
        .chain(support.iter().map(|r| r[phone_c].as_str()))
        .collect();
    let shapes: HashSet<String> = phones
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_digit() { '9' } else { c })
                .collect()
        })
        .collect();
    assert!(shapes.len() > 40, "only {} phone shapes", shapes.len());
    assert!(phones.iter().any(|p| p.starts_with("+49 ")));
    assert!(phones.iter().any(|p| p.starts_with("0049")));
    assert!(phones.iter().any(|p| p.starts_with('(')));
    assert!(phones.iter().any(|p| super::phone::JUNK.contains(p)));

    // --- messy names ---
    let names: Vec<&str> = support.iter().map(|r| r[name_c].as_str()).collect();
    assert!(
        names.iter().any(|n| n.contains(", ")),
        "no LAST, First names"
    );
    assert!(names
        .iter()
        .any(|n| n.chars().all(|c| !c.is_uppercase()) && n.contains(' ')));
    let (first_c, last_c) = (col(&crm_h, "first_name"), col(&crm_h, "last_name"));
    let lasts: HashSet<&str> = crm.iter().map(|r| r[last_c].as_str()).collect();
    let stripped = lasts.iter().filter(|l| {
        let (bare, german) = (deaccent(l, false), deaccent(l, true));
        bare != **l && (lasts.contains(bare.as_str()) || lasts.contains(german.as_str()))
    });
    assert!(stripped.count() > 3, "accents are never stripped");
    let firsts: HashSet<&str> = crm.iter().map(|r| r[first_c].as_str()).collect();
    assert!(firsts.len() >= 150);

    // --- dates, cart abandonment, email events ---
    let birth = col(&crm_h, "birth_date");
    for r in crm.iter().filter(|r| !r[birth].is_empty()) {
        let age_days = REF_END / DAY - parse_ts(&format!("{}T00:00:00Z", r[birth])) / DAY;
        assert!(
            (18 * 365..86 * 365).contains(&age_days),
            "age {age_days} days"
        );
        assert!(parse_ts(&r[col(&crm_h, "created_at")]) <= parse_ts(&r[col(&crm_h, "updated_at")]));
    }
    let mut orders_of: HashMap<String, Vec<i64>> = HashMap::new();
    for b in &shop {
        let ids = b
            .column_by_name("order_id")
            .expect("order_id")
            .as_string::<i32>();
        let ts = b
            .column_by_name("ordered_at")
            .expect("ordered_at")
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        for i in 0..b.num_rows() {
            orders_of
                .entry(owner("shop_orders", ids.value(i)))
                .or_default()
                .push(ts.value(i) / 1_000_000);
        }
    }
    let abandoned = web
        .iter()
        .filter(|e| e["event_type"] == "add_to_cart")
        .filter(|e| {
            let who = owner("web_events", e["event_id"].as_str().unwrap_or_default());
            let t = parse_ts(e["occurred_at"].as_str().unwrap_or_default());
            !orders_of
                .get(&who)
                .is_some_and(|o| o.iter().any(|&x| x >= t && x <= t + 7 * DAY))
        })
        .count();
    assert!(abandoned > 100, "only {abandoned} abandoned carts");
    let ev = col(&mail_h, "event");
    let kinds: HashSet<&str> = mail.iter().map(|r| r[ev].as_str()).collect();
    for k in ["sent", "open", "click", "unsubscribe", "bounce"] {
        assert!(kinds.contains(k), "no {k} events");
    }
}
