//! Human-style corruption of names: accents, typos, nicknames, case and order.

use super::names::FirstName;
use rand::rngs::StdRng;
use rand::Rng;

/// Replaces accented letters by their bare ASCII letter (`Müller` → `Muller`).
/// With `german` set, umlauts and ß are transliterated instead (`Müller` → `Mueller`).
pub fn deaccent(s: &str, german: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        let rep: &str = match ch {
            'ä' if german => "ae",
            'ö' if german => "oe",
            'ü' if german => "ue",
            'Ä' if german => "Ae",
            'Ö' if german => "Oe",
            'Ü' if german => "Ue",
            'ß' => "ss",
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => "a",
            'Á' | 'À' | 'Â' | 'Ä' => "A",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'É' | 'È' | 'Ê' => "E",
            'í' | 'ì' | 'î' | 'ï' => "i",
            'Í' | 'Î' => "I",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => "o",
            'Ó' | 'Ö' => "O",
            'ú' | 'ù' | 'û' | 'ü' => "u",
            'Ú' | 'Ü' => "U",
            'ñ' => "n",
            'Ñ' => "N",
            'ç' => "c",
            'Ç' => "C",
            'º' => "o",
            _ => {
                out.push(ch);
                continue;
            }
        };
        out.push_str(rep);
    }
    out
}

/// Lowercase ASCII letters and digits only, for building email local parts.
pub fn slug(s: &str) -> String {
    deaccent(s, true)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Introduces one typo: an adjacent transposition, a deletion or a doubled letter.
/// Strings shorter than four characters are returned unchanged.
pub fn typo(s: &str, rng: &mut StdRng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.len() < 4 {
        return s.to_string();
    }
    // Never touch the first letter: people rarely get that wrong.
    let i = rng.random_range(1..chars.len() - 1);
    match rng.random_range(0..3) {
        0 if chars[i] != chars[i + 1] => chars.swap(i, i + 1),
        1 => {
            chars.remove(i);
        }
        _ => chars.insert(i, chars[i]),
    }
    chars.into_iter().collect()
}

/// Capitalises the first letter of every word (also after `-` and `'`).
pub fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for ch in s.chars() {
        if start {
            out.extend(ch.to_uppercase());
        } else {
            out.extend(ch.to_lowercase());
        }
        start = matches!(ch, ' ' | '-' | '\'');
    }
    out
}

/// How aggressively a source mangles names.
#[derive(Debug, Clone, Copy)]
pub struct NameMess {
    pub nickname: f64,
    pub typo: f64,
    pub strip_accents: f64,
    pub lowercase: f64,
    pub uppercase: f64,
    pub last_first: f64,
    pub initial: f64,
}

/// CRM agents type carefully but not perfectly.
pub const CRM_NAMES: NameMess = NameMess {
    nickname: 0.02,
    typo: 0.01,
    strip_accents: 0.12,
    lowercase: 0.01,
    uppercase: 0.03,
    last_first: 0.0,
    initial: 0.0,
};

/// Checkout forms: customers type whatever they like.
pub const SHOP_NAMES: NameMess = NameMess {
    nickname: 0.1,
    typo: 0.03,
    strip_accents: 0.2,
    lowercase: 0.08,
    uppercase: 0.04,
    last_first: 0.03,
    initial: 0.04,
};

/// Support tickets: names dictated over the phone or copied from signatures.
pub const SUPPORT_NAMES: NameMess = NameMess {
    nickname: 0.2,
    typo: 0.08,
    strip_accents: 0.35,
    lowercase: 0.2,
    uppercase: 0.05,
    last_first: 0.3,
    initial: 0.03,
};

/// A first/last name pair after applying the source's habits.
pub fn mangle_parts(
    first: &FirstName,
    last: &str,
    german: bool,
    mess: &NameMess,
    rng: &mut StdRng,
) -> (String, String) {
    let mut f = if !first.nicks.is_empty() && rng.random_bool(mess.nickname) {
        first.nicks[rng.random_range(0..first.nicks.len())].to_string()
    } else {
        first.name.to_string()
    };
    let mut l = last.to_string();
    if rng.random_bool(mess.strip_accents) {
        let g = german && rng.random_bool(0.6);
        f = deaccent(&f, g);
        l = deaccent(&l, g);
    }
    if rng.random_bool(mess.typo) {
        if rng.random_bool(0.5) {
            f = typo(&f, rng);
        } else {
            l = typo(&l, rng);
        }
    }
    if rng.random_bool(mess.initial) {
        if let Some(c) = f.chars().next() {
            f = format!("{c}.");
        }
    }
    if rng.random_bool(mess.lowercase) {
        f = f.to_lowercase();
        l = l.to_lowercase();
    } else if rng.random_bool(mess.uppercase) {
        l = l.to_uppercase();
        if rng.random_bool(0.3) {
            f = f.to_uppercase();
        }
    } else if rng.random_bool(0.1) {
        // "van den Berg" vs "Van Den Berg", "d'angelo" vs "D'Angelo".
        l = title_case(&l);
    }
    (f, l)
}

/// A full name in one string, e.g. `Anna Müller` or `MUELLER, Anna`.
pub fn mangle_full(
    first: &FirstName,
    last: &str,
    german: bool,
    mess: &NameMess,
    rng: &mut StdRng,
) -> String {
    let (f, l) = mangle_parts(first, last, german, mess, rng);
    if rng.random_bool(mess.last_first) {
        let l = if rng.random_bool(0.6) {
            l.to_uppercase()
        } else {
            l
        };
        format!("{l}, {f}")
    } else if rng.random_bool(0.01) {
        // Double space, trailing space: copy/paste artefacts.
        format!("{f}  {l} ")
    } else {
        format!("{f} {l}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn accents() {
        assert_eq!(deaccent("Müller", false), "Muller");
        assert_eq!(deaccent("Müller", true), "Mueller");
        assert_eq!(
            deaccent("François Zoë José Weiß", false),
            "Francois Zoe Jose Weiss"
        );
        assert_eq!(slug("Jean-Baptiste d'Angelo"), "jeanbaptistedangelo");
    }

    #[test]
    fn typos_change_one_thing() {
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..100 {
            let t = typo("Katharina", &mut rng);
            assert_ne!(t, "Katharina");
            assert!(t.starts_with('K'));
            assert!((8..=10).contains(&t.chars().count()));
        }
        assert_eq!(typo("Al", &mut rng), "Al");
        assert_eq!(title_case("van den berg"), "Van Den Berg");
        assert_eq!(title_case("o'brien-smith"), "O'Brien-Smith");
    }
}
