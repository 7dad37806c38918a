//! Web-shop orders and in-store (POS) receipts.

use super::email;
use super::geo::Store;
use super::person::Person;
use super::records::{Batch, PosRow, ShopRow};
use super::text;
use super::time::{DAY, HOUR, REF_END};
use rand::rngs::StdRng;
use rand::Rng;

/// Order count with a long tail: many people buy never or once, a few 20+ times.
fn skewed_count(rng: &mut StdRng) -> usize {
    match rng.random_range(0..1000) {
        0..=339 => 0,
        340..=639 => 1,
        640..=839 => rng.random_range(2..=4),
        840..=969 => rng.random_range(5..=12),
        _ => rng.random_range(15..=60),
    }
}

/// A basket: item count and total, rounded to cents.
fn basket(rng: &mut StdRng, mean_price: f64) -> (i32, f64) {
    let items = match rng.random_range(0..100) {
        0..=44 => 1,
        45..=74 => 2,
        75..=89 => 3,
        _ => rng.random_range(4..=12),
    };
    let mut total = 0.0;
    for _ in 0..items {
        // Right-skewed prices between 0.2x and 5x the base price. Plain arithmetic
        // only (no exp/powf), so totals are bit-identical on every platform.
        let u: f64 = rng.random();
        total += mean_price * (0.2 + 4.8 * u * u * u);
    }
    (items, (total * 100.0).round() / 100.0)
}

/// Draws a sorted list of `n` instants in `[from, REF_END)`.
pub fn instants(n: usize, from: i64, rng: &mut StdRng) -> Vec<i64> {
    let from = from.min(REF_END - 1);
    let mut v: Vec<i64> = (0..n).map(|_| rng.random_range(from..REF_END)).collect();
    v.sort_unstable();
    v
}

/// The person's web-shop orders; returns the order times (for web sessions and tickets).
pub fn shop_orders(p: &Person, rng: &mut StdRng, out: &mut Batch) -> Vec<i64> {
    let times = instants(skewed_count(rng), p.since, rng);
    for &ts in &times {
        let base = match (&p.family_email, &p.alt_email) {
            (Some(f), _) if rng.random_bool(0.5) => f.as_str(),
            (_, Some(a)) if rng.random_bool(0.2) => a.as_str(),
            _ => p.email.as_str(),
        };
        let email = email::messy(base, &email::SHOP_EMAIL, rng);
        let name = text::mangle_full(p.first, p.last, p.german(), &text::SHOP_NAMES, rng);
        let phone = rng.random_bool(0.55).then(|| p.phone.messy(rng, 0.03));
        let (items, total) = basket(rng, 32.0);
        let status = match rng.random_range(0..100) {
            0..=89 => "paid",
            90..=95 => "refunded",
            _ => "cancelled",
        };
        out.shop.push(ShopRow {
            ts,
            owner: p.owner,
            email,
            name,
            phone,
            total,
            currency: p.country.currency(rng),
            status,
            items,
        });
    }
    times
}

/// In-store purchases, sometimes identified by a loyalty card or a phone number.
pub fn pos_orders(p: &Person, stores: &[Store], rng: &mut StdRng, out: &mut Batch) {
    if stores.is_empty() {
        return;
    }
    let n = match rng.random_range(0..100) {
        0..=54 => 0,
        55..=79 => 1,
        80..=91 => rng.random_range(2..=4),
        _ => rng.random_range(3..=8),
    };
    let days = instants(n, p.since, rng);
    for day in days {
        let local_hour = rng.random_range(8..20);
        let midnight = day - day.rem_euclid(DAY);
        let ts = (midnight
            + (local_hour - p.country.utc_offset_hours()) * HOUR
            + rng.random_range(0..HOUR))
        .min(REF_END - 1);
        let store = if rng.random_bool(0.85) {
            p.home_store
        } else {
            // Travelling: another store, usually in the same country.
            let other = rng.random_range(0..stores.len());
            if stores[other].country == p.country || rng.random_bool(0.2) {
                other
            } else {
                p.home_store
            }
        };
        let loyalty_id = match &p.crm {
            Some(crm) if p.loyalty && rng.random_bool(0.85) => match &crm.dup {
                Some(d) if ts >= d.created_at && rng.random_bool(0.3) => Some(d.contact_id.clone()),
                _ => Some(crm.contact_id.clone()),
            },
            _ => None,
        };
        let phone = rng.random_bool(0.12).then(|| p.phone.messy(rng, 0.02));
        let (items, total) = basket(rng, 24.0);
        out.pos.push(PosRow {
            ts,
            owner: p.owner,
            store,
            loyalty_id,
            phone,
            total,
            items,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn order_counts_are_skewed() {
        let mut rng = StdRng::seed_from_u64(4);
        let counts: Vec<usize> = (0..20_000).map(|_| skewed_count(&mut rng)).collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        assert!((2.4..3.6).contains(&mean), "mean {mean}");
        assert!(counts.iter().filter(|&&c| c <= 1).count() > 10_000);
        assert!(counts.iter().any(|&c| c >= 20));
    }

    #[test]
    fn baskets_are_positive_cents() {
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..1000 {
            let (items, total) = basket(&mut rng, 30.0);
            assert!(items >= 1 && total > 0.0);
            assert!(((total * 100.0).round() - total * 100.0).abs() < 1e-6);
        }
    }
}
