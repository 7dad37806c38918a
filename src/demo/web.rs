//! Clickstream: sessions on 1–4 cookies per person, logins, sign-ups,
//! checkouts matching shop orders, cart abandonment and anonymous visitors.

use super::commerce::instants;
use super::email;
use super::person::{device, uuidish, Owner, Person};
use super::records::{push_json_member, push_json_str, Batch, TextRow};
use super::time::{timestamp, DAY, REF_END, WINDOW_START};
use rand::rngs::StdRng;
use rand::Rng;

const SITE: &str = "https://shop.tessera-demo.example";
const CATEGORIES: &[&str] = &[
    "shoes",
    "jackets",
    "dresses",
    "kids",
    "home",
    "sale",
    "accessories",
    "sports",
];
const SEARCHES: &[&str] = &[
    "running+shoes",
    "rain+jacket",
    "gift",
    "linen",
    "wool+socks",
    "sneaker",
    "bettw%C3%A4sche",
];

/// One event before ids are assigned.
struct Event {
    offset: i64,
    kind: &'static str,
    url: String,
    /// Set on `login` / `signup` events.
    email: Option<String>,
    /// Identity change: `Some(Some(id))` logs in, `Some(None)` logs out (after this event).
    login: Option<Option<String>>,
}

fn ev(kind: &'static str, url: String) -> Event {
    Event {
        offset: 0,
        kind,
        url,
        email: None,
        login: None,
    }
}

fn browse_url(rng: &mut StdRng) -> (&'static str, String) {
    match rng.random_range(0..10) {
        0..=4 => (
            "product_view",
            format!("{SITE}/p/{}", rng.random_range(10_000..15_000)),
        ),
        5..=7 => (
            "page_view",
            format!(
                "{SITE}/c/{}",
                CATEGORIES[rng.random_range(0..CATEGORIES.len())]
            ),
        ),
        8 => (
            "page_view",
            format!(
                "{SITE}/search?q={}",
                SEARCHES[rng.random_range(0..SEARCHES.len())]
            ),
        ),
        _ => ("page_view", format!("{SITE}/")),
    }
}

fn landing(rng: &mut StdRng) -> Event {
    let url = match rng.random_range(0..10) {
        0..=3 => format!("{SITE}/"),
        4 => format!("{SITE}/?utm_source=newsletter&utm_medium=email"),
        5 => format!("{SITE}/c/sale?utm_source=google&utm_medium=cpc"),
        6 => format!(
            "{SITE}/p/{}?utm_source=instagram",
            rng.random_range(10_000..15_000)
        ),
        _ => browse_url(rng).1,
    };
    ev("page_view", url)
}

/// Which account a login in a session uses: primary contact or the duplicate.
fn account(p: &Person, at: i64, rng: &mut StdRng) -> Option<(String, String)> {
    let crm = p.crm.as_ref()?;
    if at < crm.created_at {
        return None;
    }
    match &crm.dup {
        Some(d) if at >= d.created_at && rng.random_bool(0.35) => Some((
            d.contact_id.clone(),
            email::messy(d.email.trim(), &email::WEB_EMAIL, rng),
        )),
        _ => Some((
            crm.contact_id.clone(),
            email::messy(&p.email, &email::WEB_EMAIL, rng),
        )),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Intent {
    Browse,
    Purchase,
    Signup,
}

/// Builds one session's events; `anchor` is the checkout time for purchases,
/// the session start otherwise.
fn session(p: &Person, intent: Intent, anchor: i64, rng: &mut StdRng) -> (Vec<Event>, usize) {
    let mut events = vec![landing(rng)];
    let login_p = match intent {
        Intent::Purchase => 0.6,
        Intent::Browse => 0.2,
        Intent::Signup => 0.0,
    };
    if intent == Intent::Signup {
        if let Some(crm) = &p.crm {
            let mut e = ev("signup", format!("{SITE}/account/signup"));
            e.email = Some(email::messy(&p.email, &email::WEB_EMAIL, rng));
            e.login = Some(Some(crm.contact_id.clone()));
            events.push(e);
        }
    } else if rng.random_bool(login_p) {
        if let Some((id, mail)) = account(p, anchor, rng) {
            let mut e = ev("login", format!("{SITE}/account/login"));
            e.email = Some(mail);
            e.login = Some(Some(id));
            events.push(e);
        }
    }
    let browsing = if intent == Intent::Purchase {
        rng.random_range(0..=2)
    } else {
        rng.random_range(0..=5)
    };
    for _ in 0..browsing {
        let (kind, url) = browse_url(rng);
        events.push(ev(kind, url));
    }
    let mut checkout_at = 0;
    let carts = match intent {
        Intent::Purchase => rng.random_range(1..=2),
        _ if rng.random_bool(0.22) => rng.random_range(1..=2),
        _ => 0,
    };
    for _ in 0..carts {
        events.push(ev(
            "product_view",
            format!("{SITE}/p/{}", rng.random_range(10_000..15_000)),
        ));
        events.push(ev("add_to_cart", format!("{SITE}/cart")));
    }
    if intent == Intent::Purchase {
        events.push(ev("page_view", format!("{SITE}/cart")));
        checkout_at = events.len();
        events.push(ev("checkout", format!("{SITE}/checkout")));
        events.push(ev("page_view", format!("{SITE}/checkout/confirmation")));
    }
    let logged_in = events.iter().any(|e| e.login.is_some());
    if logged_in && rng.random_bool(0.15) {
        let mut e = ev("logout", format!("{SITE}/account/logout"));
        e.login = Some(None);
        events.push(e);
    }
    let mut t = 0;
    for e in &mut events {
        e.offset = t;
        t += rng.random_range(4..240);
    }
    (events, checkout_at)
}

fn emit(owner: Owner, cookie: &str, device: &str, start: i64, events: Vec<Event>, out: &mut Batch) {
    let mut user: Option<String> = None;
    for e in events {
        let ts = (start + e.offset).clamp(WINDOW_START - 7 * DAY, REF_END - 1);
        if let Some(Some(id)) = &e.login {
            user = Some(id.clone());
        }
        let mut body = String::with_capacity(200);
        push_json_str(&mut body, "anonymous_id");
        body.push(':');
        push_json_str(&mut body, cookie);
        push_json_member(&mut body, "user_id", user.as_deref());
        push_json_member(&mut body, "email", e.email.as_deref());
        push_json_member(&mut body, "event_type", Some(e.kind));
        push_json_member(&mut body, "url", Some(&e.url));
        push_json_member(&mut body, "device", Some(device));
        push_json_member(&mut body, "occurred_at", Some(&timestamp(ts)));
        body.push('}');
        out.web.push(TextRow {
            ts,
            owner,
            key: None,
            body,
        });
        if let Some(None) = e.login {
            user = None;
        }
    }
}

/// The cookie in use at `at`: one of those already seen, preferring newer ones.
fn cookie_at(p: &Person, at: i64, rng: &mut StdRng) -> usize {
    let seen = p.cookies.iter().filter(|c| c.from <= at).count().max(1);
    if seen > 1 && rng.random_bool(0.6) {
        seen - 1
    } else {
        rng.random_range(0..seen)
    }
}

/// All web sessions of a person: sign-up, one per shop order (mostly) and browsing.
pub fn sessions(p: &Person, orders: &[i64], rng: &mut StdRng, out: &mut Batch) {
    if p.cookies.is_empty() {
        return;
    }
    let mut plan: Vec<(Intent, i64)> = Vec::new();
    if let Some(crm) = &p.crm {
        if crm.via_web {
            plan.push((Intent::Signup, crm.created_at));
        }
    }
    // Not every checkout is tracked (ad blockers, declined analytics consent).
    plan.extend(
        orders
            .iter()
            .filter(|_| rng.random_bool(0.6))
            .map(|&t| (Intent::Purchase, t)),
    );
    let browse = if rng.random_bool(0.15) {
        0
    } else {
        match rng.random_range(0..10) {
            0..=5 => rng.random_range(1..=2),
            6..=8 => rng.random_range(3..=5),
            _ => rng.random_range(6..=14),
        }
    };
    plan.extend(
        instants(browse, p.since, rng)
            .into_iter()
            .map(|t| (Intent::Browse, t)),
    );
    for (intent, anchor) in plan {
        let (events, checkout_at) = session(p, intent, anchor, rng);
        let start = match intent {
            Intent::Purchase => anchor - events.get(checkout_at).map_or(0, |e| e.offset),
            _ => anchor,
        };
        let c = &p.cookies[cookie_at(p, start, rng)];
        emit(p.owner, &c.id, c.device, start, events, out);
    }
}

/// An anonymous-only visitor: one or two cookies, a few events, never logs in.
pub fn visitor(index: u64, rng: &mut StdRng, out: &mut Batch) {
    let owner = Owner::Visitor(index);
    let cookies = if rng.random_bool(0.1) { 2 } else { 1 };
    for _ in 0..cookies {
        let id = uuidish(rng);
        let dev = device(rng);
        for start in instants(rng.random_range(1..=3), WINDOW_START, rng) {
            let mut events = vec![landing(rng)];
            for _ in 0..rng.random_range(0..=3) {
                let (kind, url) = browse_url(rng);
                events.push(ev(kind, url));
            }
            if rng.random_bool(0.08) {
                events.push(ev("add_to_cart", format!("{SITE}/cart")));
            }
            let mut t = 0;
            for e in &mut events {
                e.offset = t;
                t += rng.random_range(4..240);
            }
            emit(owner, &id, dev, start, events, out);
        }
    }
}
